package chaos

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
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
