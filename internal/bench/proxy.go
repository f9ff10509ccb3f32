package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/DalgoT4D/prefect-proxy-go/internal/app"
	"github.com/DalgoT4D/prefect-proxy-go/internal/config"
	"github.com/DalgoT4D/prefect-proxy-go/internal/httpapi"
	"github.com/DalgoT4D/prefect-proxy-go/internal/logging"
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
	close func() // releases the app (nil for StartBinary)
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
	go func() { p.done <- httpapi.Serve(ctx, cfg.ListenAddr, handler, func(a net.Addr) { addr <- a }) }()
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
	p.stop()
	err := <-p.done
	if p.close != nil {
		p.close()
	}
	return err
}

// StartBinary runs a built cmd/api binary against prefectAPI. With redisURL
// empty it runs as an operator's laptop would (embedded Redis and in-process
// worker); with a Redis URL it is the production api, with no worker inside.
// The relay reconciler is off so it does not call the upstream during the
// benchmark. Its JSON logs go to a pipe that is drained and discarded.
func StartBinary(path, prefectAPI, redisURL string) (*Proxy, error) {
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, path)
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
		"PREFECT_API_URL=" + prefectAPI, "LISTEN_ADDR=127.0.0.1:0", "WORKER_LISTEN_ADDR=127.0.0.1:0",
		"RELAY_RECONCILE_INTERVAL=0", "LOG_LEVEL=info",
	}
	if redisURL != "" {
		cmd.Env = append(cmd.Env, "REDIS_URL="+redisURL,
			"JOB_ENCRYPTION_KEY=MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=") // a fixed test key
	}
	cmd.Dir = os.TempDir() // no stray .env
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	cmd.Stderr = io.Discard
	out, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, err
	}
	p := &Proxy{stop: cancel, done: make(chan error, 1)}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			// "api listening on http://127.0.0.1:port (Prefect ...)"
			if rest, ok := strings.CutPrefix(sc.Text(), "api listening on "); ok {
				u, _, _ := strings.Cut(rest, " ")
				select {
				case addr <- u:
				default:
				}
			}
		}
	}()
	go func() {
		err := cmd.Wait()
		if ctx.Err() != nil { // stopped by Close
			err = nil
		}
		p.done <- err
	}()
	pid := cmd.Process.Pid
	p.CPU = func() time.Duration { return procCPU(pid) }
	select {
	case u := <-addr:
		p.URL = u
		return p, nil
	case err := <-p.done:
		cancel()
		return nil, fmt.Errorf("%s exited before listening: %v", path, err)
	case <-time.After(30 * time.Second):
		_ = p.Close()
		return nil, errors.New(path + " did not print its address in 30s")
	}
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
