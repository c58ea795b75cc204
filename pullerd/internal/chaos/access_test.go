package chaos

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pubsub-shm/pubsub-shm/ringbuf"
)

// nobody is the uid (and gid) of the other user in the access tests (tests run as root).
const nobody = 65534

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the access tests run processes as another uid and need root (make test runs as root in CI)")
	}
}

// ringSetEntries returns every path under root (root excluded).
func ringSetEntries(t testing.TB, root string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && p != root {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// probe runs the probe helper as uid over paths and returns its output lines.
func probe(t *testing.T, uid int, paths ...string) []string {
	t.Helper()
	out, err := helperCmd(t, uid, "probe", paths...).CombinedOutput()
	if err != nil {
		t.Fatalf("probe as uid %d: %v\n%s", uid, err, out)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

// checkOwnerOnly fails the test unless root and everything in it is owned by this user,
// directories 0700 and everything else 0600 (nothing group- or world-accessible); it
// returns the ring files and the sockets.
func checkOwnerOnly(t testing.TB, root string) (rings, sockets []string) {
	t.Helper()
	for _, p := range append([]string{root}, ringSetEntries(t, root)...) {
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			continue // removed meanwhile (a temporary file)
		}
		mode := os.FileMode(st.Mode & 0o777)
		isDir := st.Mode&syscall.S_IFMT == syscall.S_IFDIR
		want := os.FileMode(0o600)
		if isDir {
			want = 0o700
		}
		if mode != want || st.Uid != uint32(os.Geteuid()) {
			t.Errorf("%s: mode %v uid %d; want %v, uid %d", p, mode, st.Uid, want, os.Geteuid())
		}
		switch {
		case strings.HasSuffix(p, ".sock"):
			sockets = append(sockets, p)
		case strings.HasSuffix(p, ".ring"):
			rings = append(rings, p)
		}
	}
	return rings, sockets
}

// TestAccessOwnerOnly: a pullerd ring set is owner-only: the root, set directories (0700),
// ring files, metrics.addr and control sockets (0600) are owned by pullerd's user and
// nothing in it is group- or world-accessible (let alone writable). A real process of
// another uid cannot list the directories, create files in them, open any ring for reading
// or writing (neither with open(2) nor with ringbuf.Open), or connect to a control
// socket, even when the directories are made traversable, which leaves the files' own
// modes as the only guard.
func TestAccessOwnerOnly(t *testing.T) {
	requireRoot(t)
	root := shmRoot(t)
	srv := newEmulator(t, 10*time.Second, "sub")
	pd := startPullerd(t, srv, root, t.TempDir(), "-subscription", "sub", "-partitions", "2", "-streams", "1", "-ring-capacity", "65536")
	defer pd.term(30 * time.Second)

	entries := ringSetEntries(t, root)
	rings, sockets := checkOwnerOnly(t, root)
	if len(rings) != 3 || len(sockets) != 2 {
		t.Fatalf("expected 3 rings and 2 control sockets, found %v", entries)
	}
	setDir := filepath.Join(root, project+".sub")
	var paths []string
	check := func(lines []string, phase string) {
		t.Helper()
		if len(lines) < len(paths) {
			t.Fatalf("%s: probe printed %v", phase, lines)
		}
		for _, l := range lines {
			if strings.HasSuffix(l, ": ok") {
				t.Errorf("%s: uid %d got in: %s", phase, nobody, l)
			} else if !strings.Contains(l, "permission denied") {
				t.Errorf("%s: uid %d refused for another reason than permissions: %s", phase, nobody, l)
			}
		}
	}
	paths = append(append([]string{root, setDir}, rings...), sockets...)
	check(probe(t, nobody, paths...), "directories 0700")
	paths = append(rings, sockets...)

	// Make the directories traversable by others: the files' 0600 still refuses.
	for _, d := range []string{root, setDir} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	lines := probe(t, nobody, paths...)
	for _, d := range []string{root, setDir} {
		os.Chmod(d, 0o700)
	}
	check(lines, "directories 0711, files 0600")
	// And root itself (the owner) gets in, so the refusals above are the permissions.
	if r, err := ringbuf.Open(rings[0], ringbuf.OpenOptions{}); err != nil {
		t.Fatalf("the owner cannot open its ring: %v", err)
	} else {
		r.Close()
	}
	if err := pd.term(30 * time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestAccessForeignRingRefused: a ring file created by a real process of another uid is
// refused by ringbuf.Open even for root (who could read it), naming the owner; a ring of
// our own with group or world permission bits is refused naming the mode; pullerd refuses
// a ring root owned by another user or open to others, and a ring set directory inside
// its root owned by another user, each with an error naming the path, at start.
func TestAccessForeignRingRefused(t *testing.T) {
	requireRoot(t)
	root := shmRoot(t)
	foreign := shmRoot(t) // a directory of the other user, next to ours
	if err := os.Chown(foreign, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	out, err := helperCmd(t, nobody, "create-ring", filepath.Join(foreign, "data-0.ring")).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "created" {
		t.Fatalf("create a ring as uid %d: %v\n%s", nobody, err, out)
	}
	_, err = ringbuf.Open(filepath.Join(foreign, "data-0.ring"), ringbuf.OpenOptions{})
	if !errors.Is(err, ringbuf.ErrPermission) || !strings.Contains(err.Error(), "owned by uid 65534") {
		t.Errorf("open a ring created by uid %d: %v; want ErrPermission naming the owner", nobody, err)
	}

	own := filepath.Join(root, "own")
	os.Mkdir(own, 0o700)
	r, err := ringbuf.Create(filepath.Join(own, "data-0.ring"), ringbuf.CreateOptions{Kind: ringbuf.KindData, Capacity: 4096})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	for _, mode := range []os.FileMode{0o640, 0o604, 0o666} {
		os.Chmod(filepath.Join(own, "data-0.ring"), mode)
		_, err := ringbuf.Open(filepath.Join(own, "data-0.ring"), ringbuf.OpenOptions{})
		if !errors.Is(err, ringbuf.ErrPermission) || !strings.Contains(err.Error(), "must not be accessible to group or others") {
			t.Errorf("open a ring of mode %v: %v; want ErrPermission", mode, err)
		}
	}
	os.RemoveAll(own)

	srv := newEmulator(t, 10*time.Second, "sub")
	for name, setup := range map[string]func(dir string) error{
		"root owned by another user": func(dir string) error { return os.Chown(dir, nobody, nobody) },
		"root open to others":        func(dir string) error { return os.Chmod(dir, 0o755) },
		"set directory of another user": func(dir string) error {
			set := filepath.Join(dir, project+".sub")
			if err := os.Mkdir(set, 0o700); err != nil {
				return err
			}
			return os.Chown(set, nobody, nobody)
		},
	} {
		dir := filepath.Join(root, strings.ReplaceAll(name, " ", "-"))
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := setup(dir); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(pullerdBinary(t), "-project", project, "-subscription", "sub", "-shm-dir", dir,
			"-partitions", "1", "-streams", "1", "-ring-capacity", "65536", "-log-format", "console")
		cmd.Env = append(os.Environ(), "PUBSUB_EMULATOR_HOST="+srv.Addr())
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Errorf("%s: pullerd exited with %v, want status 1\n%s", name, err, out)
			continue
		}
		if !strings.Contains(string(out), "insecure") || !strings.Contains(string(out), dir) {
			t.Errorf("%s: pullerd's error does not say \"insecure\" and name the path:\n%s", name, out)
		}
		if ents := ringSetEntries(t, dir); len(ents) > 1 {
			t.Errorf("%s: pullerd left %v", name, ents)
		}
	}
	// Leave nothing behind (shmRoot fails on leftovers): the foreign ring and the dirs.
	os.RemoveAll(filepath.Join(foreign, "data-0.ring"))
	for _, e := range []string{"root-owned-by-another-user", "root-open-to-others", "set-directory-of-another-user"} {
		os.RemoveAll(filepath.Join(root, e))
	}
}
