package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// EnvPrefectDB selects the database of the Prefect server the harness starts:
// "sqlite" (the default) or "postgres" (a private PostgreSQL cluster, as
// Dalgo runs Prefect in production). `PREFECT_DB=postgres make test` runs the
// whole suite against it.
const EnvPrefectDB = "PREFECT_DB"

// Database backends of the harness's Prefect server.
const (
	DBSQLite   = "sqlite"
	DBPostgres = "postgres"
)

// PrefectDB is the database the harness's Prefect uses (EnvPrefectDB).
func PrefectDB() string {
	if strings.EqualFold(strings.TrimSpace(os.Getenv(EnvPrefectDB)), DBPostgres) {
		return DBPostgres
	}
	return DBSQLite
}

// Postgres is a private PostgreSQL cluster: Debian's postgresql package
// (scripts/deps.sh --test installs it), a fresh data directory in a temp dir,
// listening on a free loopback port with trust authentication. Durability is
// off (fsync, synchronous_commit): it is a test database.
type Postgres struct {
	// Addr is 127.0.0.1:PORT.
	Addr string
	// User and Database to connect as and to.
	User, Database string

	proc *Proc
	dir  string
	bin  string // the server's binaries (psql)
}

// PrefectURL is the SQLAlchemy URL Prefect's server takes in
// PREFECT_SERVER_DATABASE_CONNECTION_URL (asyncpg ships with Prefect).
func (p *Postgres) PrefectURL() string {
	return fmt.Sprintf("postgresql+asyncpg://%s@%s/%s", p.User, p.Addr, p.Database)
}

// StartPostgres initialises and starts a cluster. As root, initdb and the
// server run as the `postgres` user the Debian package creates (initdb
// refuses root). The caller stops it with Stop.
func StartPostgres() (*Postgres, error) {
	bin, err := postgresBinDir()
	if err != nil {
		return nil, err
	}
	cred, err := postgresCredential()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "testenv-postgres-")
	if err != nil {
		return nil, err
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			_ = os.RemoveAll(dir)
			return nil, err
		}
	}
	data := filepath.Join(dir, "data")
	if err := initdb(bin, data, cred); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ { // the free port can be taken in between
		p, err := startPostgresIn(bin, dir, cred)
		if err == nil {
			return p, nil
		}
		lastErr = err
	}
	_ = os.RemoveAll(dir)
	return nil, lastErr
}

// postgresReady is the server's line once it accepts connections.
var postgresReady = regexp.MustCompile(`database system is (ready) to accept connections`)

func startPostgresIn(bin, dir string, cred *syscall.Credential) (*Postgres, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	p, err := startProc(procOpts{
		name: "postgres",
		path: filepath.Join(bin, "postgres"),
		args: []string{"-D", filepath.Join(dir, "data"), "-h", "127.0.0.1", "-p", strconv.Itoa(port),
			"-k", dir, // its unix socket stays in the temp dir too
			"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
			"-c", "max_connections=200"},
		env:     baseEnv(),
		dir:     dir,
		ready:   postgresReady,
		timeout: 60 * time.Second,
		cred:    cred,
	})
	if err != nil {
		return nil, err
	}
	pg := &Postgres{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), User: "postgres", Database: "postgres", proc: p, dir: dir, bin: bin}
	// The ready line can come from a server that lost the port race and is
	// about to exit; make sure this one answers on its port.
	conn, err := net.DialTimeout("tcp", pg.Addr, 5*time.Second)
	if err != nil {
		p.Kill()
		return nil, errorf("postgres on %s: %v; output:\n%s", pg.Addr, err, tail(p.Logs(), 2000))
	}
	_ = conn.Close()
	p.URL = pg.Addr
	return pg, nil
}

// Stop stops the server (a fast shutdown) and removes its data.
func (p *Postgres) Stop() {
	if p.proc != nil {
		// SIGINT is postgres's fast shutdown: no waiting for clients.
		_ = p.proc.cmd.Process.Signal(syscall.SIGINT)
		if !p.proc.WaitExit(15 * time.Second) {
			p.proc.Kill()
		}
		p.proc.killGroup()
	}
	_ = os.RemoveAll(p.dir)
}

// Query runs one SQL statement with psql and returns its unaligned output.
func (p *Postgres) Query(sql string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	host, port, _ := net.SplitHostPort(p.Addr)
	cmd := exec.CommandContext(ctx, filepath.Join(p.bin, "psql"), "-h", host, "-p", port, "-U", p.User,
		"-d", p.Database, "-tAX", "-v", "ON_ERROR_STOP=1", "-c", sql)
	cmd.Env = baseEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", errorf("psql: %v: %s", err, tail(string(out), 1000))
	}
	return strings.TrimSpace(string(out)), nil
}

// Logs returns the server's output.
func (p *Postgres) Logs() string { return p.proc.Logs() }

func initdb(bin, data string, cred *syscall.Credential) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres",
		"--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync")
	cmd.Env = baseEnv()
	cmd.Dir = filepath.Dir(data)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: cred}
	if out, err := cmd.CombinedOutput(); err != nil {
		return errorf("initdb %s: %v: %s", data, err, tail(string(out), 2000))
	}
	return nil
}

// postgresBinDir is the newest /usr/lib/postgresql/<major>/bin with initdb
// (Debian keeps the server binaries off PATH), or the directory of an initdb
// on PATH.
func postgresBinDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	slices.SortFunc(dirs, func(a, b string) int { return majorOf(b) - majorOf(a) })
	if len(dirs) > 0 {
		return filepath.Dir(dirs[0]), nil
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errorf("PostgreSQL's initdb not found (install it: apt-get install -y postgresql, or run `bash scripts/deps.sh --test`)")
}

// majorOf is the version directory's number in /usr/lib/postgresql/<major>/bin/initdb.
func majorOf(initdbPath string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(initdbPath))))
	return n
}

// postgresCredential is who runs initdb and the server: nil (ourselves)
// unless we are root, then the `postgres` user.
func postgresCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, errorf("running as root, and there is no `postgres` user to run PostgreSQL as (the postgresql package creates it): %v", err)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}
