package relay

import (
	"strings"
	"testing"

	"github.com/DalgoT4D/prefect-proxy-go/internal/config"
)

func TestDescribeSaysWhatTheRelayDoesAndWhy(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"off by default", nil, []string{"relay off", "PREFECT_NOTIFICATIONS_WEBHOOK_KEY is unset", "no reconciler"}},
		{"inbound key alone", map[string]string{"RELAY_INBOUND_KEY": "in"}, []string{"relay off", "RELAY_INBOUND_KEY alone"}},
		{"on, reconciler waits", map[string]string{"PREFECT_NOTIFICATIONS_WEBHOOK_KEY": "k"},
			[]string{"relay on", "http://127.0.0.1:8002/webhooks/v1/notification/", "once relay-setup"}},
		{"on, reconciler explicit", map[string]string{"PREFECT_NOTIFICATIONS_WEBHOOK_KEY": "k", "RELAY_RECONCILE_INTERVAL": "1m"},
			[]string{"relay on", "reconciler every 1m0s (RELAY_RECONCILE_INTERVAL)"}},
		{"on, reconciler off", map[string]string{"PREFECT_NOTIFICATIONS_WEBHOOK_KEY": "k", "RELAY_RECONCILE_INTERVAL": "0"},
			[]string{"relay on", "reconciler off"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := config.Load(func(k string) string { return tc.env[k] })
			if err != nil {
				t.Fatal(err)
			}
			got := Describe(cfg)
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("%q lacks %q", got, w)
				}
			}
		})
	}
}
