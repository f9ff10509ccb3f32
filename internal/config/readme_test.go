package config

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// README's configuration table documents every variable of Vars(), and no
// variable Vars() does not know.
func TestREADMEConfigurationTableMatchesVars(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(raw)
	start := strings.Index(text, "\n## Configuration")
	if start < 0 {
		t.Fatal("README has no Configuration section")
	}
	section := text[start+1:]
	if end := strings.Index(section, "\n## "); end >= 0 {
		section = section[:end]
	}
	name := regexp.MustCompile("`([A-Z][A-Z0-9_]+)`")
	documented := map[string]bool{}
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		first := strings.SplitN(line, "|", 3)[1] // the Variable column
		for _, m := range name.FindAllStringSubmatch(first, -1) {
			documented[m[1]] = true
		}
	}
	known := map[string]bool{}
	for _, v := range Vars() {
		known[v.Name] = true
		if !documented[v.Name] {
			t.Errorf("README's configuration table does not document %s", v.Name)
		}
	}
	for n := range documented {
		if !known[n] {
			t.Errorf("README's configuration table documents %s, which internal/config does not read", n)
		}
	}
}
