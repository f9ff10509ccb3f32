// Command relay-setup points Prefect at the relay: it creates or updates,
// over Prefect's REST API, the Webhook block and the automation that call
// POST <relay URL> for every RELAY_STATES state change. Idempotent: a second
// run reports "unchanged" and changes nothing.
//
//	relay-setup -url https://proxy.example.org/webhooks/v1/notification/
//	relay-setup --help | --version
//
// Reads PREFECT_API_URL, RELAY_INBOUND_KEY (or PREFECT_NOTIFICATIONS_WEBHOOK_KEY),
// RELAY_STATES and RELAY_PUBLIC_URL (the -url default) from the environment / .env.
// With REDIS_URL set (the workers' Redis) it records the switch there: the
// relay is now Django's notification path, so the reconciler starts.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/DalgoT4D/prefect-proxy-go/internal/cli"
	"github.com/DalgoT4D/prefect-proxy-go/internal/config"
	"github.com/DalgoT4D/prefect-proxy-go/internal/jobs"
	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect"
	"github.com/DalgoT4D/prefect-proxy-go/internal/relay"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	cli.Exit(err, os.Stderr)
}

// Set at build time: -ldflags "-X main.version=... -X main.commit=..."
// (make build, the Dockerfile); --version falls back to Go's VCS stamp.
var version, commit string

// run installs or updates the relay's block and automation in Prefect and
// prints what it did as JSON. Errors carry their exit status
// (cli.ExitError); --help and --version return nil.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	env := config.Env(getenv, ".env")
	var publicURL, blockName, automationName, tags, replace *string
	command := cli.Command{
		Name:     "relay-setup",
		Synopsis: "points Prefect at the relay: creates or updates the Webhook block and the automation that POST every RELAY_STATES state change to it (idempotent)",
		Usage:    "relay-setup [flags]   e.g. relay-setup -url https://proxy.example.org/webhooks/v1/notification/",
		Program:  config.RelaySetup,
		Version:  version,
		Commit:   commit,
		Flags: func(fs *flag.FlagSet) {
			publicURL = fs.String("url", env("RELAY_PUBLIC_URL"), "the relay's URL as Prefect reaches it, e.g. https://proxy.example.org/webhooks/v1/notification/ (env RELAY_PUBLIC_URL)")
			blockName = fs.String("block-name", relay.DefaultBlockName, "name of the Webhook block document")
			automationName = fs.String("automation-name", relay.DefaultAutomationName, "name of the automation")
			tags = fs.String("tags", "", "comma-separated Prefect tags: only runs with one of them notify (default: every run)")
			replace = fs.String("replace", "", `comma-separated names of automations to disable first, e.g. "Flow Run State Change Notification" (Prefect calling Django directly)`)
		},
	}
	rest, err := cli.Parse(command, args, stdout, stderr)
	if errors.Is(err, cli.ErrDone) {
		return nil
	}
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return cli.Usage("relay-setup: unexpected arguments %q; run 'relay-setup --help'", strings.Join(rest, " "))
	}
	if *publicURL == "" {
		return cli.Usage("relay-setup: -url (or RELAY_PUBLIC_URL) is required: the relay's public URL")
	}
	// Setup never seals a job: the workers' environment works without
	// JOB_ENCRYPTION_KEY, and REDIS_URL is validated as everywhere else.
	cfg, err := config.Load(env, config.NoJobs)
	if err != nil {
		return err
	}
	if cfg.RelayInboundKey == "" {
		return errors.New("relay-setup: RELAY_INBOUND_KEY (or PREFECT_NOTIFICATIONS_WEBHOOK_KEY) is required: Prefect must send it")
	}
	// Reach Redis before changing anything in Prefect: a switch that cannot
	// be recorded would leave the reconciler off while Prefect no longer
	// calls Django directly.
	var rdb redis.UniversalClient
	if !cfg.Embedded() {
		if rdb, err = jobs.Connect(cfg.RedisURL); err != nil {
			return err
		}
		defer rdb.Close()
		if err := rdb.Ping(ctx).Err(); err != nil {
			return fmt.Errorf("relay-setup: redis at REDIS_URL not reachable: %w", err)
		}
	}
	pc := prefect.New(prefect.Config{
		BaseURL: cfg.PrefectURL, Timeout: cfg.PrefectTimeout,
		AuthString: cfg.PrefectAuthString, APIKey: cfg.PrefectAPIKey,
	})
	switched := time.Now().UTC()
	res, err := relay.Setup(ctx, pc, relay.SetupOptions{
		URL: *publicURL, Key: cfg.RelayInboundKey, States: cfg.RelayStates,
		BlockName: *blockName, AutomationName: *automationName, Tags: splitList(*tags),
		Replace: splitList(*replace),
	})
	if err != nil {
		return err
	}
	if rdb != nil {
		if err := relay.RecordSetup(ctx, rdb, relay.SetupRecord{AutomationID: res.AutomationID, URL: *publicURL, SwitchedAt: switched}); err != nil {
			return fmt.Errorf("relay-setup: Prefect is set up but the switch was not recorded in Redis (run again): %w", err)
		}
	} else {
		fmt.Fprintln(stderr, "relay-setup: REDIS_URL is unset, so the switch is not recorded: the reconciler stays off "+
			"unless RELAY_RECONCILE_INTERVAL is set on the workers")
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		relay.SetupResult
		Recorded bool `json:"recorded_in_redis"`
	}{res, rdb != nil})
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
