package daemon

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pubsub-shm/pubsub-shm/pullerd/emulator"
	"github.com/pubsub-shm/pubsub-shm/pullerd/internal/testreader"
	"github.com/pubsub-shm/pubsub-shm/ringbuf"
)

var (
	binDir   string
	binOnce  sync.Once
	binPath  string
	binError error
)

// pullerdBinary builds cmd pullerd once per test binary.
func pullerdBinary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binError = os.MkdirTemp("", "pullerd-bin-")
		if binError != nil {
			return
		}
		binPath = filepath.Join(binDir, "pullerd")
		out, err := exec.Command("go", "build", "-race", "-o", binPath, "github.com/pubsub-shm/pubsub-shm/pullerd").CombinedOutput()
		if err != nil {
			binError = fmt.Errorf("go build pullerd: %v\n%s", err, out)
		}
	})
	if binError != nil {
		t.Fatal(binError)
	}
	return binPath
}

// proc is pullerd running as a separate process.
type proc struct {
	cmd     *exec.Cmd
	metrics string
	done    chan error
	log     *logTail
}

// logTail keeps a process's stderr for failure messages.
type logTail struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logTail) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() < 1<<20 {
		l.b.Write(p)
	}
	return len(p), nil
}

func (l *logTail) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var readyRE = regexp.MustCompile(`^pullerd ready control=(\S+) metrics=(\S+)$`)

// startProc starts the pullerd binary against srv with its ring root at root.
func startProc(t testing.TB, srv *emulator.Server, root string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(pullerdBinary(t), append([]string{"-project", project, "-log-level", "info", "-stagger", "1ms",
		"-metrics-addr", "127.0.0.1:0"}, args...)...)
	cmd.Env = append(os.Environ(), "PUBSUB_EMULATOR_HOST="+srv.Addr(), "PUBSUB_SHM_DIR="+root)
	p := &proc{cmd: cmd, done: make(chan error, 1), log: &logTail{}}
	cmd.Stderr = p.log
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := readyRE.FindStringSubmatch(sc.Text()); m != nil {
				ready <- m[2]
			}
		}
		p.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("pullerd (pid %d) log:\n%s", cmd.Process.Pid, p.log)
		}
	})
	select {
	case p.metrics = <-ready:
	case err := <-p.done:
		t.Fatalf("pullerd exited before it was ready: %v\n%s", err, p.log)
	case <-time.After(30 * time.Second):
		t.Fatalf("pullerd not ready after 30 s\n%s", p.log)
	}
	return p
}

// stop sends SIGTERM and checks for exit status 0.
func (p *proc) stop(t testing.TB) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("pullerd exited with %v after SIGTERM\n%s", err, p.log)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("pullerd did not exit 30 s after SIGTERM\n%s", p.log)
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill(t testing.TB) {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.done
}

// TestProcessEndToEnd: 100,000 messages with attributes and ordering keys, through the
// pullerd binary, the rings and a reader speaking the protocol; every message is read with
// byte-equal payload and attributes, acked exactly once, and none before its commit.
func TestProcessEndToEnd(t *testing.T) {
	const n = 100_000
	root := shmRoot(t)
	srv := newEmulator(t, 10*time.Second)
	want := publish(t, srv, 0, n)
	p := startProc(t, srv, root, "-subscription", "sub", "-partitions", "4", "-streams", "2",
		"-ring-capacity", "8388608", "-ack-deadline", "10s", "-batch-rows", "2000")
	c := newConsumer(t, setDir(root, "sub"), 4, want)
	c.hold = func(b testreader.Batch) bool { return b.Partition == 1 && b.BatchID%3 == 0 }
	c.until(90*time.Second, "every message read", func() bool { return c.distinct() == n })
	time.Sleep(time.Second) // let ackd settle the commits
	heldIDs := map[string]bool{}
	for _, b := range c.held {
		for _, m := range b.Messages {
			heldIDs[m.ID] = true
		}
	}
	if len(heldIDs) == 0 {
		t.Fatal("no batch held back; the test proves nothing")
	}
	zero, one, more := ackCounts(srv)
	if more != 0 || zero != len(heldIDs) || one != n-len(heldIDs) {
		t.Fatalf("before the held commits: %d acked once, %d more, %d not; want exactly the %d held back not acked", one, more, zero, len(heldIDs))
	}
	for _, m := range srv.Messages() {
		if heldIDs[m.ID] && m.Acks != 0 {
			t.Fatalf("message %s acked before its commit", m.ID)
		}
	}
	c.commitHeld()
	waitAcked(t, srv, n, 30*time.Second, nil)
	for id, k := range c.seen {
		if k != 1 {
			t.Fatalf("message %s read %d times", id, k)
		}
	}
	if got := metric(t, p.metrics, "pullerd_acks_sent_total"); got != n {
		t.Errorf("pullerd_acks_sent_total %v, want %d", got, n)
	}
	p.stop(t)
	assertEmpty(t, root)
}

// TestProcessKillRestart: pullerd killed with SIGKILL; the reader holding its rings gets a
// clear error (producer dead); a restarted pullerd detects the stale ring files, recreates
// them with new instance ids, and after the leases of the killed one expire every message
// is delivered and acked, none lost.
func TestProcessKillRestart(t *testing.T) {
	const n = 5000
	root := shmRoot(t)
	srv := newEmulator(t, 10*time.Second)
	want := publish(t, srv, 0, n)
	args := []string{"-subscription", "sub", "-partitions", "2", "-streams", "2", "-ring-capacity", "1048576",
		"-ack-deadline", "2s", "-batch-rows", "200"}
	p1 := startProc(t, srv, root, args...)
	dir := setDir(root, "sub")
	c := newConsumer(t, dir, 2, want)
	c.hold = func(b testreader.Batch) bool { return b.BatchID > 3 }
	c.until(30*time.Second, "some messages read", func() bool { return c.distinct() >= n/4 })
	oldIDs := []uint64{c.set.InstanceID(0), c.set.InstanceID(1)}
	time.Sleep(300 * time.Millisecond) // the first commits get acked
	p1.kill(t)

	if err := c.set.Check(0, time.Second); !errors.Is(err, ringbuf.ErrPeerDead) || !strings.Contains(err.Error(), "is gone") {
		t.Fatalf("reader of a killed pullerd: %v, want ErrPeerDead naming the dead pid", err)
	}
	for _, f := range []string{"data-0.ring", "data-1.ring", "commit.ring", "control.sock"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Fatalf("after SIGKILL %s should be left behind: %v", f, err)
		}
	}

	p2 := startProc(t, srv, root, args...)
	for pt := range 2 {
		err := c.set.Check(pt, time.Second)
		if !errors.Is(err, testreader.ErrRecreated) {
			t.Fatalf("partition %d after restart: %v, want ErrRecreated", pt, err)
		}
		if err := c.set.Reopen(pt); err != nil {
			t.Fatal(err)
		}
		if c.set.InstanceID(pt) == oldIDs[pt] {
			t.Fatalf("partition %d kept its instance id", pt)
		}
	}
	if err := c.set.ReopenCommit(); err != nil {
		t.Fatal(err)
	}
	// The held batches of the killed pullerd can never be acked: their commit is stale.
	c.mu.Lock()
	c.held, c.hold = nil, nil
	c.mu.Unlock()
	deadline := time.Now().Add(60 * time.Second)
	for {
		zero, _, _ := ackCounts(srv)
		if zero == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d messages never acked after the restart", zero)
		}
		if c.pollOnce() == 0 {
			time.Sleep(5 * time.Millisecond)
		}
	}
	if c.distinct() != n {
		t.Fatalf("read %d distinct messages, want %d", c.distinct(), n)
	}
	p2.stop(t)
	assertEmpty(t, root)
}
