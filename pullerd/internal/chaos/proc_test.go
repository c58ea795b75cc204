package chaos

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pubsub-shm/pubsub-shm/pullerd/emulator"
)

// TestMain removes the binaries built for the tests and fails the run if a test left a
// process running or one of its ring roots in /dev/shm. (Only the roots this test binary
// created: other runs of these tests may be going on at the same time.)
func TestMain(m *testing.M) {
	if name := os.Getenv(helperEnv); name != "" {
		os.Exit(runHelper(name, os.Args[1:]))
	}
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	for _, d := range helperDirs {
		os.RemoveAll(d)
	}
	if left := liveProcs(); len(left) > 0 {
		fmt.Fprintln(os.Stderr, "chaos: processes left running:", left)
		code = 1
	}
	rootsMu.Lock()
	for d := range roots {
		if _, err := os.Stat(d); err == nil {
			fmt.Fprintln(os.Stderr, "chaos: ring root left in /dev/shm:", d)
			os.RemoveAll(d)
			code = 1
		}
	}
	rootsMu.Unlock()
	os.Exit(code)
}

const (
	project    = emulator.DefaultProject
	topic      = "t"
	rootPrefix = "pubsub-shm-chaos-"
)

var (
	rootsMu sync.Mutex
	roots   = map[string]bool{} // ring roots created by shmRoot

	binOnce sync.Once
	binDir  string
	binErr  error
)

// pullerdBinary builds cmd pullerd once per test binary (without -race: the machine is
// small and these tests run several processes at once; the race detector runs on pullerd
// in pullerd/internal/daemon).
func pullerdBinary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "chaos-bin-")
		if binErr != nil {
			return
		}
		// Readable by every user: the access tests run this test binary's copy as another uid.
		if binErr = os.Chmod(binDir, 0o755); binErr != nil {
			return
		}
		out, err := exec.Command("go", "build", "-o", filepath.Join(binDir, "pullerd"), "github.com/pubsub-shm/pubsub-shm/pullerd").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build pullerd: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return filepath.Join(binDir, "pullerd")
}

// shmRoot returns a fresh ring root /dev/shm/pubsub-shm-chaos-*, mode 0700. At the end of
// the test it fails if anything is left in it, then removes it.
func shmRoot(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("/dev/shm", rootPrefix)
	if err != nil {
		t.Fatal(err)
	}
	rootsMu.Lock()
	roots[d] = true
	rootsMu.Unlock()
	if err := os.Chmod(d, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		var left []string
		filepath.WalkDir(d, func(p string, e os.DirEntry, err error) error {
			if p != d {
				left = append(left, strings.TrimPrefix(p, d+"/"))
			}
			return nil
		})
		os.RemoveAll(d)
		if len(left) > 0 && !t.Failed() {
			t.Errorf("left in the ring root %s after the test: %v", d, left)
		}
	})
	return d
}

// newEmulator starts an in-process emulator with topic "t" and the given subscriptions on
// it. Its Messages() are the ground truth of the accounting (deliveries and acks).
func newEmulator(t testing.TB, ackDeadline time.Duration, subs ...string) *emulator.Server {
	t.Helper()
	cfg := emulator.Config{Topics: []string{topic}, AckDeadline: ackDeadline}
	for _, s := range subs {
		cfg.Subscriptions = append(cfg.Subscriptions, emulator.Subscription{Name: s, Topic: topic})
	}
	srv, err := emulator.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// proc is a child process whose stdout and stderr go to a log file; stdout lines are also
// kept for waitLine.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	waitErr error

	mu     sync.Mutex
	lines  []string
	notify chan struct{}
}

var (
	procsMu sync.Mutex
	procs   = map[*proc]bool{}
)

func liveProcs() []string {
	procsMu.Lock()
	defer procsMu.Unlock()
	var out []string
	for p := range procs {
		select {
		case <-p.done:
		default:
			out = append(out, fmt.Sprintf("%s (pid %d)", p.name, p.cmd.Process.Pid))
			p.cmd.Process.Kill()
		}
	}
	return out
}

// startProc starts cmd with its output in logDir/<name>.log (appended to, so that the
// incarnations of one component share a file). The process is killed at the end of the
// test if it still runs; the log is printed if the test failed.
func startProc(t testing.TB, name, logDir string, cmd *exec.Cmd) *proc {
	t.Helper()
	logPath := filepath.Join(logDir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	args := strings.Join(cmd.Args, " ")
	if i := strings.Index(args, " -cp "); i >= 0 { // a JVM: leave out the classpath
		if j := strings.Index(args[i+5:], " "); j >= 0 {
			args = args[:i] + " -cp ..." + args[i+5+j:]
		}
	}
	fmt.Fprintf(f, "==== %s: %s\n", time.Now().Format(time.RFC3339Nano), args)
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{}), notify: make(chan struct{})}
	cmd.Stderr = f
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	procsMu.Lock()
	procs[p] = true
	procsMu.Unlock()
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(f, line)
			p.mu.Lock()
			p.lines = append(p.lines, line)
			close(p.notify)
			p.notify = make(chan struct{})
			p.mu.Unlock()
		}
		io.Copy(io.Discard, stdout)
		p.waitErr = cmd.Wait()
		fmt.Fprintf(f, "==== %s: %s exited: %v\n", time.Now().Format(time.RFC3339Nano), name, p.waitErr)
		f.Close()
		procsMu.Lock()
		delete(procs, p)
		procsMu.Unlock()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("%s log (%s), last 40 lines:\n%s", name, logPath, tailFile(logPath, 40))
		}
	})
	return p
}

// tailFile returns the last n lines of a file.
func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitLine waits for a stdout line, from index from on, that match accepts; it returns
// the line and the index after it. It fails the test if the process exits or the timeout
// passes first.
func (p *proc) waitLine(t testing.TB, from int, timeout time.Duration, what string, match func(string) bool) (string, int) {
	t.Helper()
	l, i, err := p.nextLine(from, timeout, match)
	if err != nil {
		t.Fatalf("%s: waiting for %s: %v\n%s", p.name, what, err, tailFile(p.logPath, 40))
	}
	return l, i
}

func (p *proc) nextLine(from int, timeout time.Duration, match func(string) bool) (string, int, error) {
	deadline := time.After(timeout)
	for {
		p.mu.Lock()
		for ; from < len(p.lines); from++ {
			if match(p.lines[from]) {
				l := p.lines[from]
				p.mu.Unlock()
				return l, from + 1, nil
			}
		}
		ch := p.notify
		p.mu.Unlock()
		select {
		case <-ch:
		case <-p.done:
			// Drain what was printed before the exit.
			p.mu.Lock()
			n := len(p.lines)
			p.mu.Unlock()
			if from < n {
				continue
			}
			return "", from, fmt.Errorf("exited (%v)", p.waitErr)
		case <-deadline:
			return "", from, fmt.Errorf("not seen within %v", timeout)
		}
	}
}

// lineCount returns how many stdout lines were seen so far.
func (p *proc) lineCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.lines)
}

// alive reports whether the process still runs.
func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// kill sends SIGKILL and waits for the exit.
func (p *proc) kill() {
	if p.alive() {
		p.cmd.Process.Kill()
	}
	<-p.done
}

// term sends SIGTERM and waits up to timeout for the exit; it returns the exit error, or
// an error saying it had to be killed.
func (p *proc) term(timeout time.Duration) error {
	if !p.alive() {
		return fmt.Errorf("%s had already exited: %v", p.name, p.waitErr)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.waitErr
	case <-time.After(timeout):
		p.kill()
		return fmt.Errorf("%s did not exit within %v of SIGTERM; killed", p.name, timeout)
	}
}

// pullerd starts the pullerd binary against srv with ring root root and waits until it
// serves. Logs go to logDir/pullerd.log.
func startPullerd(t testing.TB, srv *emulator.Server, root, logDir string, args ...string) *proc {
	t.Helper()
	p, err := tryStartPullerd(t, srv, root, logDir, args...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// tryStartPullerd is startPullerd returning an error when pullerd exits before it serves.
func tryStartPullerd(t testing.TB, srv *emulator.Server, root, logDir string, args ...string) (*proc, error) {
	t.Helper()
	return tryStartPullerdVia(t, srv, root, logDir, "pullerd", nil, args...)
}

// tryStartPullerdVia is tryStartPullerd with the process named name (its log is
// logDir/<name>.log) and its command line prefixed by wrap (e.g. nsenter -t <pid> -m --, to
// run it in another mount namespace: a simulated host). Flags in args come after the
// defaults, so a later -metrics-addr wins.
func tryStartPullerdVia(t testing.TB, srv *emulator.Server, root, logDir, name string, wrap []string, args ...string) (*proc, error) {
	t.Helper()
	argv := append([]string{pullerdBinary(t), "-project", project, "-log-level", "info",
		"-log-format", "console", "-stagger", "1ms", "-metrics-addr", "127.0.0.1:0", "-shm-dir", root}, args...)
	argv = append(append([]string(nil), wrap...), argv...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "PUBSUB_EMULATOR_HOST="+srv.Addr())
	p := startProc(t, name, logDir, cmd)
	_, _, err := p.nextLine(0, 60*time.Second, func(l string) bool { return strings.HasPrefix(l, "pullerd ready ") })
	if err != nil {
		p.kill()
		return p, fmt.Errorf("pullerd did not start: %v\n%s", err, tailFile(p.logPath, 30))
	}
	return p, nil
}
