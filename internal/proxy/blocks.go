package proxy

import "strings"

// CleanBlockName reduces a block name the way the Python proxy did before a
// lookup or create: re.sub(r"[^\-a-z0-9]", "", name.lower()). Prefect's block
// names allow only lowercase letters, digits and dashes.
func CleanBlockName(name string) string {
	var b strings.Builder
	b.Grow(len(name))
	for _, r := range strings.ToLower(name) {
		if r == '-' || (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		}
	}
	return b.String()
}
