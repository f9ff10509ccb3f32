package deploy

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// composeService is the part of a resolved compose service these tests read.
type composeService struct {
	Image         string            `json:"image"`
	Command       []string          `json:"command"`
	Entrypoint    []string          `json:"entrypoint"`
	ContainerName string            `json:"container_name"`
	Environment   map[string]string `json:"environment"`
	EnvFile       []string          `json:"env_file"`
	Ports         []any             `json:"ports"`
	Profiles      []string          `json:"profiles"`
	Restart       string            `json:"restart"`
	DependsOn     map[string]struct {
		Condition string `json:"condition"`
	} `json:"depends_on"`
	Healthcheck *struct {
		Test    []string `json:"test"`
		Disable bool     `json:"disable"`
	} `json:"healthcheck"`
	Build *struct {
		Target string `json:"target"`
	} `json:"build"`
}

type composeFile struct {
	Services map[string]composeService `json:"services"`
}

// composeConfig runs the real Compose implementation (`docker-compose
// config`) on ../docker-compose.yml with .env.example as the env file, and
// returns the configuration it resolves.
func composeConfig(t *testing.T, extraEnv []string, profiles ...string) composeFile {
	t.Helper()
	bin, err := exec.LookPath("docker-compose")
	if err != nil {
		t.Fatal("docker-compose not found: `make compose-check` (scripts/compose-check.sh) installs Debian's docker-compose")
	}
	args := []string{"-f", "docker-compose.yml"}
	for _, p := range profiles {
		args = append(args, "--profile", p)
	}
	cmd := exec.Command(bin, append(args, "config")...)
	cmd.Dir = ".."
	// Only what compose needs: the test must not depend on the caller's
	// shell, nor on a .env the developer keeps in the repository.
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "PROXY_ENV_FILE=.env.example"}, extraEnv...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("docker-compose %s config: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	var cf composeFile
	if err := yaml.Unmarshal(out, &cf); err != nil {
		t.Fatalf("docker-compose config printed what it cannot have meant: %v\n%s", err, out)
	}
	return cf
}

func TestComposeResolves(t *testing.T) {
	t.Parallel()
	// docker-compose config lists profiled services either way; with the
	// profiles it also validates what they need.
	cases := []struct {
		name     string
		profiles []string
	}{
		{"default", nil},
		{"relay and prefect profiles", []string{"relay", "prefect"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cf := composeConfig(t, nil, tc.profiles...)
			var names []string
			for n := range cf.Services {
				names = append(names, n)
			}
			slices.Sort(names)
			if want := []string{"api", "prefect", "redis", "relay-setup", "worker"}; !slices.Equal(names, want) {
				t.Fatalf("services %v, want %v", names, want)
			}
			for name, s := range cf.Services {
				checkService(t, name, s)
			}
		})
	}
}

var hostPort = regexp.MustCompile(`^([0-9.]+):(\d+):\d+(/tcp)?$`)

// published returns the host address and port of a resolved port entry,
// which docker-compose prints as "ip:port:target/tcp" or, without an
// address, as a mapping.
func published(p any) (ip, port string) {
	switch v := p.(type) {
	case string:
		if m := hostPort.FindStringSubmatch(v); m != nil {
			return m[1], m[2]
		}
		return "", v
	case map[string]any:
		ip, _ := v["host_ip"].(string)
		return ip, fmt.Sprint(v["published"])
	}
	return "", fmt.Sprint(p)
}

func checkService(t *testing.T, name string, s composeService) {
	t.Helper()
	for _, p := range s.Ports {
		if ip, _ := published(p); ip != "127.0.0.1" {
			t.Errorf("%s publishes %v: by default ports bind to 127.0.0.1 only", name, p)
		}
	}
	wantHealth := map[string][]string{
		"redis":  {"CMD", "redis-cli", "ping"},
		"api":    {"CMD", "/usr/local/bin/api", "healthcheck"},
		"worker": {"CMD", "/usr/local/bin/worker", "healthcheck"},
	}
	if want, ok := wantHealth[name]; ok && (s.Healthcheck == nil || !slices.Equal(s.Healthcheck.Test, want)) {
		t.Errorf("%s healthcheck %+v, want test %v", name, s.Healthcheck, want)
	}
	switch name {
	case "api", "worker", "relay-setup":
		if d, ok := s.DependsOn["redis"]; !ok || d.Condition != "service_healthy" {
			t.Errorf("%s must wait for a healthy redis: depends_on %+v", name, s.DependsOn)
		}
		if s.Environment["REDIS_URL"] != "redis://redis:6379/0" {
			t.Errorf("%s: REDIS_URL %q, want the stack's redis", name, s.Environment["REDIS_URL"])
		}
		// A variable set only in the env file reaches the container.
		if got := s.Environment["DJANGO_WEBHOOK_URL"]; got != "http://host.docker.internal:8002/webhooks/v1/notification/" {
			t.Errorf("%s: DJANGO_WEBHOOK_URL from .env.example = %q", name, got)
		}
	}
	switch name {
	case "worker":
		if _, ok := s.DependsOn["api"]; ok {
			t.Error("worker depends on api: workers need Redis only")
		}
		if s.ContainerName != "" || len(s.Ports) > 0 {
			t.Errorf("worker has container_name %q / ports %v: --scale worker=N needs neither", s.ContainerName, s.Ports)
		}
		if s.Build == nil || s.Build.Target != "worker" {
			t.Errorf("worker builds target %+v, want worker (its HEALTHCHECK and command)", s.Build)
		}
	case "api":
		if s.Build == nil || s.Build.Target != "api" {
			t.Errorf("api builds target %+v, want api", s.Build)
		}
	case "prefect":
		if !slices.Equal(s.Profiles, []string{"prefect"}) {
			t.Errorf("prefect: profiles %v, want [prefect]", s.Profiles)
		}
	case "relay-setup":
		if s.Build == nil || s.Build.Target != "api" {
			t.Errorf("relay-setup builds target %+v, want api (the image holding relay-setup)", s.Build)
		}
		if !slices.Equal(s.Profiles, []string{"relay"}) || s.Restart != "no" {
			t.Errorf("relay-setup: profiles %v, restart %q; want a one-shot in profile relay", s.Profiles, s.Restart)
		}
		if !slices.Equal(s.Entrypoint, []string{"/usr/local/bin/relay-setup"}) || len(s.Command) != 0 {
			t.Errorf("relay-setup: entrypoint %v, command %v; want the relay-setup entrypoint, so `run relay-setup -flag` passes flags", s.Entrypoint, s.Command)
		}
	}
}

// The bind address is the operator's choice.
func TestComposeBindAddressOverridable(t *testing.T) {
	t.Parallel()
	cf := composeConfig(t, []string{"PROXY_BIND_ADDR=0.0.0.0", "PROXY_PORT=9085"})
	got := cf.Services["api"].Ports
	if len(got) != 1 {
		t.Fatalf("api ports %v", got)
	}
	if ip, port := published(got[0]); ip != "0.0.0.0" || port != "9085" {
		t.Errorf("api publishes %v with PROXY_BIND_ADDR=0.0.0.0 PROXY_PORT=9085", got[0])
	}
}

// Every proxy container gets the whole env file (docker-compose config
// inlines it, so this reads the file as written; checkService sees a value
// of it arrive).
func TestComposeEnvFile(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var cf composeFile
	if err := yaml.Unmarshal(data, &cf); err != nil { // resolves the << merge keys
		t.Fatal(err)
	}
	for _, name := range []string{"api", "worker", "relay-setup"} {
		if ef := cf.Services[name].EnvFile; !slices.Equal(ef, []string{"${PROXY_ENV_FILE:-.env}"}) {
			t.Errorf("%s env_file %v, want [${PROXY_ENV_FILE:-.env}]", name, ef)
		}
	}
}

// The image: digest-pinned bases, a non-root user, an exec-form HEALTHCHECK
// per target (distroless has no shell), version and commit stamped in.
func TestDockerfile(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../Docker/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	src := string(data)
	pinned := regexp.MustCompile(`(?m)^ARG (GO_IMAGE|RUNTIME_IMAGE)=\S+:\S+@sha256:[0-9a-f]{64}$`)
	if n := len(pinned.FindAllString(src, -1)); n != 2 {
		t.Errorf("want GO_IMAGE and RUNTIME_IMAGE pinned as image:tag@sha256:<digest>, found %d", n)
	}
	for _, from := range regexp.MustCompile(`(?m)^FROM (\S+)`).FindAllStringSubmatch(src, -1) {
		if !slices.Contains([]string{"${GO_IMAGE}", "${RUNTIME_IMAGE}", "runtime"}, from[1]) {
			t.Errorf("FROM %s: bases come from the pinned ARGs", from[1])
		}
	}
	if !regexp.MustCompile(`(?m)^USER 65532:65532$`).MatchString(src) {
		t.Error("the runtime stage must run as uid 65532 (distroless nonroot), numerically so Kubernetes' runAsNonRoot can check it")
	}
	for _, target := range []string{"worker", "api"} {
		stage := regexp.MustCompile(`(?s)FROM runtime AS ` + target + `\n(.*?)(?:\nFROM |\z)`).FindStringSubmatch(src)
		if stage == nil {
			t.Errorf("no %s target", target)
			continue
		}
		if !strings.Contains(stage[1], `CMD ["/usr/local/bin/`+target+`", "healthcheck"]`) ||
			!strings.Contains(stage[1], "HEALTHCHECK") {
			t.Errorf("target %s: want HEALTHCHECK CMD [\"/usr/local/bin/%s\", \"healthcheck\"]", target, target)
		}
		if !strings.Contains(stage[1], `CMD ["/usr/local/bin/`+target+`"]`) {
			t.Errorf("target %s does not run %s by default", target, target)
		}
	}
	if !strings.HasSuffix(strings.TrimSpace(src), `CMD ["/usr/local/bin/api"]`) {
		t.Error("the last stage (what a plain docker build gives) should be the api")
	}
	// Each cmd's package main holds `var version, commit string`, which
	// --version prints (as make build stamps them).
	if !strings.Contains(src, "-X main.version=${VERSION} -X main.commit=${COMMIT}") {
		t.Error("the build must stamp VERSION and COMMIT into package main, where --version reads them")
	}
}
