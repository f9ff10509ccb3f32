package proxy

import "testing"

func TestCleanBlockName(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"":                 "",
		"abc-123":          "abc-123",
		"My_Secret.Block":  "mysecretblock",
		"org slug/git-PAT": "orgsluggit-pat",
		"İstanbul":         "istanbul", // Python's lower() turns İ into "i̇"; the combining dot is then dropped
		"ß-ü":              "-",
	}
	for in, want := range cases {
		if got := CleanBlockName(in); got != want {
			t.Errorf("CleanBlockName(%q) = %q, want %q", in, got, want)
		}
	}
}
