package chaos

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	pb "cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
)

// smallTmpfs mounts a private tmpfs of size bytes (mode 0700) and returns its path; it is
// unmounted at the end of the test (tests run as root).
func smallTmpfs(t *testing.T, size string) string {
	t.Helper()
	requireRoot(t)
	dir := t.TempDir()
	mnt := filepath.Join(dir, "shm")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount a %s tmpfs (tests run as root): %v\n%s", size, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", mnt, err, out)
		}
	})
	return mnt
}

// runPullerdToExit runs pullerd with args until it exits (it must, within a minute) and
// returns its exit status and output.
func runPullerdToExit(t *testing.T, env []string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(pullerdBinary(t), append([]string{"-project", project, "-log-format", "console", "-stagger", "1ms"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		cmd.Process.Kill()
		<-done
		t.Fatalf("pullerd did not exit within a minute:\n%s", out)
	}
	var ee *exec.ExitError
	if err == nil {
		return 0, string(out)
	}
	if !errors.As(err, &ee) {
		t.Fatal(err)
	}
	if st, ok := ee.Sys().(syscall.WaitStatus); ok && st.Signaled() {
		t.Fatalf("pullerd died of signal %v (a SIGBUS means a ring was touched beyond the memory reserved for it):\n%s", st.Signal(), out)
	}
	return ee.ExitCode(), string(out)
}

// TestShmTooSmall: /dev/shm too small for the rings (a private tmpfs stands in for it).
// pullerd fails at start, before serving, with exit status 1 and an error naming the ring,
// the bytes it needs, the bytes free and the fix, never with a SIGBUS; it leaves nothing
// behind. When the space runs out for a subscription attached later over the control
// socket, that attach fails with the same clear error and pullerd goes on serving the
// subscriptions it has.
func TestShmTooSmall(t *testing.T) {
	srv := newEmulator(t, 10*time.Second, "sub", "sub2")
	env := []string{"PUBSUB_EMULATOR_HOST=" + srv.Addr()}

	// Not even one ring fits, and the rings fit but not all of them.
	for _, c := range []struct{ size, capacity, partitions string }{
		{"1m", "4194304", "1"},
		{"6m", "1048576", "8"},
	} {
		mnt := smallTmpfs(t, c.size)
		root := filepath.Join(mnt, "root")
		code, out := runPullerdToExit(t, env, "-shm-dir", root, "-subscription", "sub", "-ring-capacity", c.capacity,
			"-partitions", c.partitions, "-streams", "1", "-metrics-addr", "127.0.0.1:0")
		if code != 1 {
			t.Errorf("tmpfs %s, %s partitions of %s: exit status %d, want 1\n%s", c.size, c.partitions, c.capacity, code, out)
		}
		for _, want := range []string{"no space", "bytes free", "needs", "raise the size of /dev/shm"} {
			if !strings.Contains(out, want) {
				t.Errorf("tmpfs %s, %s partitions of %s: the error does not say %q:\n%s", c.size, c.partitions, c.capacity, want, out)
			}
		}
		if strings.Contains(out, "pullerd ready") {
			t.Errorf("pullerd said it was ready with no room for its rings:\n%s", out)
		}
		if ents := ringSetEntries(t, mnt); len(ents) > 1 || (len(ents) == 1 && ents[0] != root) {
			t.Errorf("tmpfs %s: pullerd left %v", c.size, ents)
		}
	}

	// Room for the first subscription's rings, not for a second one attached at run time.
	mnt := smallTmpfs(t, "3500k")
	root := filepath.Join(mnt, "root")
	pd := startPullerd(t, srv, root, t.TempDir(), "-subscription", "sub", "-ring-capacity", "1048576", "-partitions", "2", "-streams", "1")
	conn, err := net.Dial("unix", filepath.Join(root, "control.sock"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, `{"op":"attach","project":%q,"subscription":"sub2","partitions":2}`+"\n", project)
	line, err := bufio.NewReader(conn).ReadBytes('\n')
	conn.Close()
	if err != nil {
		t.Fatal(err)
	}
	var resp struct {
		OK    bool   `json:"ok"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(line, &resp); err != nil {
		t.Fatalf("answer %q: %v", line, err)
	}
	if resp.OK || !strings.Contains(resp.Error, "bytes free") {
		t.Errorf("attach with no room left: %s; want an error naming the space", line)
	}
	if !pd.alive() {
		t.Fatal("pullerd died when an attach ran out of space")
	}
	if _, err := os.Stat(filepath.Join(root, project+".sub2", "data-0.ring")); err == nil {
		t.Error("a ring of the failed attach is left")
	}
	// The first subscription still works end to end (a message goes through the rings).
	pub := startPublisher(srv, 1000, 100, nil)
	published := pub.Wait()
	c := newGoConsumer(t, filepath.Join(root, project+".sub"), 2)
	c.readAll(t, published, 30*time.Second)
	c.close()
	if err := pd.term(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	if ents := ringSetEntries(t, mnt); len(ents) > 1 {
		t.Errorf("pullerd left %v after its clean stop", ents)
	}
}

// rssKiB returns a process's resident set size in KiB (0 if it is gone).
func rssKiB(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			if len(f) >= 2 {
				n, _ := strconv.ParseInt(f[1], 10, 64)
				return n
			}
		}
	}
	return 0
}

// metricsAddr returns the metrics address a pullerd process printed when it got ready.
func (p *proc) metricsAddr(t testing.TB) string {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.lines {
		if i := strings.Index(l, " metrics="); strings.HasPrefix(l, "pullerd ready ") && i >= 0 {
			return l[i+len(" metrics="):]
		}
	}
	t.Fatal("pullerd printed no metrics address")
	return ""
}

// metricValue scrapes pullerd's /metrics and returns the sum of the samples of name.
func metricValue(t testing.TB, addr, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var sum float64
	for _, l := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(l, name+" ") || strings.HasPrefix(l, name+"{") {
			f := strings.Fields(l)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			sum += v
		}
	}
	return sum
}

// TestRingFullSlowReader: the reader (Spark, slow) attaches and heart-beats but reads and
// commits nothing for several ack deadlines while a 60 MB backlog waits, and pullerd's own
// flow-control limits are set far away (1 GiB, 10 M messages) so that only the full ring
// holds it back. pullerd must stop pulling (the emulator's count of messages sent stops
// growing, far below the backlog), keep its memory bounded (RSS), and keep the leases of
// everything it holds alive (no message is redelivered although the 10 s ack deadline
// passes twice). When the reader resumes, every message arrives exactly once and
// is acked once.
func TestRingFullSlowReader(t *testing.T) {
	const n, size = 60000, 1000
	// Pub/Sub's minimum ack deadline (10 s; a 3 s one lost leases on a loaded 2-core CI
	// machine between delivery and ack, which is not the promise under test), and a stall
	// of more than two deadlines.
	const stall = 22 * time.Second
	root := shmRoot(t)
	srv := newEmulator(t, 10*time.Second, "sub")
	pd := startPullerd(t, srv, root, t.TempDir(), "-subscription", "sub", "-partitions", "1", "-streams", "1",
		"-ring-capacity", "1048576", "-ack-deadline", "10s", "-max-outstanding-messages", "4000",
		"-max-outstanding-bytes", "1073741824", "-batch-rows", "200")
	metrics := pd.metricsAddr(t)
	c := newGoConsumer(t, filepath.Join(root, project+".sub"), 1) // attached, heart-beating, not reading
	defer c.close()
	pub := startPublisher(srv, 30000, n, func(i int) *pb.PubsubMessage {
		return &pb.PubsubMessage{Data: []byte(strings.Repeat(string(rune('a'+i%26)), size))}
	})
	published := pub.Wait()

	var sentAt5, rssMax int64
	start := time.Now()
	for time.Since(start) < stall {
		time.Sleep(500 * time.Millisecond)
		rssMax = max(rssMax, rssKiB(pd.cmd.Process.Pid))
		if sentAt5 == 0 && time.Since(start) >= 5*time.Second {
			sentAt5 = srv.Stats().MessagesSent
		}
	}
	sent := srv.Stats().MessagesSent
	held := metricValue(t, metrics, "pullerd_held_messages")
	t.Logf("reader stalled %v: emulator sent %d of %d (%d at 5 s), pullerd holds %v, RSS max %d MiB, lease extensions %v",
		stall, sent, n, sentAt5, held, rssMax/1024, metricValue(t, metrics, "pullerd_lease_extensions_total"))
	if sent > n/3 {
		t.Errorf("pullerd took %d of %d messages with its ring full: it did not stop pulling", sent, n)
	}
	if sent > sentAt5+int64(n/100) {
		t.Errorf("the emulator went on sending with the ring full: %d at 5 s, %d at %v", sentAt5, sent, stall)
	}
	if rssMax > 256<<10 {
		t.Errorf("pullerd RSS reached %d MiB with a 1 MiB ring", rssMax/1024)
	}
	redelivered := 0
	for _, m := range srv.Messages() {
		if m.Deliveries > 1 {
			redelivered++
		}
	}
	if redelivered > 0 {
		t.Errorf("%d messages redelivered while pullerd held them: their leases were not kept alive", redelivered)
	}
	if metricValue(t, metrics, "pullerd_lease_extensions_total") == 0 {
		t.Errorf("no lease extended in %v with a 10 s ack deadline", stall)
	}

	c.readAll(t, published, 2*time.Minute)
	deadline := time.Now().Add(time.Minute)
	for {
		acked, multi := ackState(srv)
		if len(acked) == n {
			if multi > 0 {
				t.Errorf("%d messages acked more than once", multi)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d acked a minute after the reader resumed", len(acked), n)
		}
		c.pollOnce(t)
		time.Sleep(50 * time.Millisecond)
	}
	dups := 0
	for _, k := range c.seen {
		dups += k - 1
	}
	if dups > 0 {
		redelivered, maxDeliveries := 0, 0
		for _, m := range srv.Messages() {
			if m.Deliveries > 1 {
				redelivered++
				maxDeliveries = max(maxDeliveries, m.Deliveries)
			}
		}
		t.Errorf("%d messages read twice or more after the reader resumed; the emulator redelivered %d (at most %d times each); lease extensions %v",
			dups, redelivered, maxDeliveries, metricValue(t, metrics, "pullerd_lease_extensions_total"))
	}
	if err := pd.term(30 * time.Second); err != nil {
		t.Fatal(err)
	}
}
