package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/DalgoT4D/prefect-proxy-go/internal/app"
	"github.com/DalgoT4D/prefect-proxy-go/internal/config"
	"github.com/DalgoT4D/prefect-proxy-go/internal/httpapi"
	"github.com/DalgoT4D/prefect-proxy-go/internal/logging"
	"github.com/DalgoT4D/prefect-proxy-go/internal/testenv"
)

// Proxy is the api's real read path — config.Load, then app.New and its API
// (prefect.Client, proxy.Service, httpapi.New with its middleware, metrics
// and JSON access log), served by httpapi.Serve — listening on loopback TCP,
// wired by the same code as cmd/api (minus the worker, which reads do not
// touch; the embedded Redis sits idle).
type Proxy struct {
	URL   string // http://127.0.0.1:port
	stop  context.CancelFunc
	done  chan error
	proc  *testenv.Proc // StartBinary's process
	close func()        // releases the app (nil for StartBinary)
	// CPU, when set, is the CPU time used so far by a proxy running in
	// another process (StartBinary); in-process CPU is in Result.CPU already.
	CPU func() time.Duration
}

// StartProxy serves the api against the Prefect API root prefectAPI. Access
// logs are formatted as in production and written to logOut (io.Discard in
// benchmarks: formatting is measured, a terminal is not).
func StartProxy(prefectAPI string, logOut io.Writer) (*Proxy, error) {
	env := map[string]string{"PREFECT_API_URL": prefectAPI, "LISTEN_ADDR": "127.0.0.1:0"}
	cfg, err := config.Load(func(k string) string { return env[k] })
	if err != nil {
		return nil, err
	}
	log := logging.New(logOut, cfg.LogLevel, cfg.LogFormat)
	a, err := app.New(cfg, log)
	if err != nil {
		return nil, err
	}
	handler, err := a.API(context.Background())
	if err != nil {
		a.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan net.Addr, 1)
	p := &Proxy{stop: cancel, done: make(chan error, 1), close: a.Close}
	go func() {
		p.done <- httpapi.Serve(ctx, cfg.ListenAddr, handler, httpapi.LimitsFor(cfg), func(a net.Addr) { addr <- a })
	}()
	select {
	case a := <-addr:
		p.URL = "http://" + a.String()
		return p, nil
	case err := <-p.done:
		cancel()
		a.Close()
		return nil, fmt.Errorf("proxy did not start: %w", err)
	case <-time.After(5 * time.Second):
		cancel()
		go func() { <-p.done; a.Close() }()
		return nil, fmt.Errorf("proxy did not start in 5s")
	}
}

// Close stops the server and waits for it.
func (p *Proxy) Close() error {
	if p.proc != nil {
		if err, clean := p.proc.Stop(10 * time.Second); !clean {
			return fmt.Errorf("%s did not stop cleanly: %v", p.proc, err)
		}
		return nil
	}
	p.stop()
	err := <-p.done
	if p.close != nil {
		p.close()
	}
	return err
}

// StartBinary runs the cmd/api binary (built by internal/testenv's launcher)
// against prefectAPI. With redisURL empty it runs as an operator's laptop
// would (embedded Redis and in-process worker); with a Redis URL it is the
// production api, with no worker inside. The relay reconciler is off so it
// does not call the upstream during the benchmark; it logs as in production.
func StartBinary(prefectAPI, redisURL string) (*Proxy, error) {
	env := map[string]string{"PREFECT_API_URL": prefectAPI, "RELAY_RECONCILE_INTERVAL": "0",
		"LOG_LEVEL": "info", "LOG_FORMAT": "json"}
	if redisURL != "" {
		env["REDIS_URL"] = redisURL
		env["JOB_ENCRYPTION_KEY"] = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=" // a fixed test key
	}
	proc, err := testenv.StartAPIProcess(env)
	if err != nil {
		return nil, err
	}
	pid := proc.Pid()
	return &Proxy{URL: proc.URL, proc: proc, CPU: func() time.Duration { return procCPU(pid) }}, nil
}

// procCPU reads utime+stime of a process from /proc (clock ticks of 10 ms on
// Linux; runs of seconds make that resolution fine).
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// Fields after the ")" that ends the command name: state is field 3,
	// utime 14 and stime 15 (1-based over the whole line).
	_, rest, ok := strings.Cut(string(b), ") ")
	if !ok {
		return 0
	}
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const ticks = 100 // sysconf(_SC_CLK_TCK) on Linux
	return time.Duration(ut+st) * time.Second / ticks
}
