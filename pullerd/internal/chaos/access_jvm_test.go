//go:build crossproc

package chaos

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pubsub-shm/pubsub-shm/bench/jvm"
)

// javaProbe runs dev.pubsubshm.chaos.AccessProbe over paths, as uid (>= 0) or as this user.
// The JVM runs from a copy of jvm-reader's classes that every user can read (RingFile needs
// nothing else).
func javaProbe(t *testing.T, uid int, paths ...string) []string {
	t.Helper()
	root, err := jvm.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	classes := t.TempDir()
	os.Chmod(filepath.Dir(classes), 0o755)
	os.Chmod(classes, 0o755)
	for _, d := range []string{"classes", "test-classes"} {
		if out, err := exec.Command("cp", "-r", filepath.Join(root, "jvm-reader", "target", d), filepath.Join(classes, d)).CombinedOutput(); err != nil {
			t.Fatalf("copy %s (run make jvm): %v\n%s", d, err, out)
		}
	}
	exec.Command("chmod", "-R", "a+rX", classes).Run()
	java := "java"
	if h := os.Getenv("JAVA_HOME"); h != "" {
		java = filepath.Join(h, "bin", "java")
	}
	args := append([]string{"--add-opens=java.base/java.nio=ALL-UNNAMED", "-Xshare:off", "-cp",
		filepath.Join(classes, "classes") + ":" + filepath.Join(classes, "test-classes"), "dev.pubsubshm.chaos.AccessProbe"}, paths...)
	cmd := exec.Command(java, args...)
	cmd.Dir = "/"
	cmd.Env = append(os.Environ(), "HOME=/tmp")
	if uid >= 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid), Groups: []uint32{}}}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("AccessProbe as uid %d: %v\n%s", uid, err, out)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.HasPrefix(l, "open ") || strings.HasPrefix(l, "connect ") {
			lines = append(lines, l)
		}
	}
	if len(lines) != len(paths) {
		t.Fatalf("AccessProbe printed %d results for %d paths:\n%s", len(lines), len(paths), out)
	}
	return lines
}

// TestCrossProcessJavaAccess: the Java opener (RingFile, what the Spark reader maps rings
// with), in a real JVM running as another uid, can open none of a running pullerd's rings
// and connect to none of its control sockets, whether the directories are closed (0700)
// or made traversable (then the files' 0600 refuses); and a JVM of the owner refuses a ring
// that a process of another uid created, naming the owner.
func TestCrossProcessJavaAccess(t *testing.T) {
	requireRoot(t)
	root := shmRoot(t)
	srv := newEmulator(t, 10*time.Second, "sub")
	pd := startPullerd(t, srv, root, t.TempDir(), "-subscription", "sub", "-partitions", "2", "-streams", "1", "-ring-capacity", "65536")
	rings, sockets := checkOwnerOnly(t, root)
	paths := append(rings, sockets...)
	check := func(lines []string, phase string) {
		t.Helper()
		for _, l := range lines {
			if strings.HasSuffix(l, ": ok") {
				t.Errorf("%s: a JVM of uid %d got in: %s", phase, nobody, l)
			} else if !strings.Contains(strings.ToLower(l), "permission") && !strings.Contains(l, "AccessDenied") {
				t.Errorf("%s: refused, but the error does not say it is a permission problem: %s", phase, l)
			}
		}
	}
	start := time.Now()
	check(javaProbe(t, nobody, paths...), "directories 0700")
	setDir := filepath.Join(root, project+".sub")
	for _, d := range []string{root, setDir} {
		os.Chmod(d, 0o711)
	}
	lines := javaProbe(t, nobody, paths...)
	for _, d := range []string{root, setDir} {
		os.Chmod(d, 0o700)
	}
	check(lines, "directories 0711, files 0600")
	t.Logf("two probes of %d paths in %v", len(paths), time.Since(start).Round(time.Millisecond))
	if err := pd.term(30 * time.Second); err != nil {
		t.Fatal(err)
	}

	foreign := shmRoot(t)
	os.Chown(foreign, nobody, nobody)
	if out, err := helperCmd(t, nobody, "create-ring", filepath.Join(foreign, "data-0.ring")).CombinedOutput(); err != nil {
		t.Fatalf("create a ring as uid %d: %v\n%s", nobody, err, out)
	}
	l := javaProbe(t, -1, filepath.Join(foreign, "data-0.ring"))[0]
	if !strings.Contains(l, "65534") || strings.HasSuffix(l, ": ok") {
		t.Errorf("a JVM of root opening a ring created by uid %d: %s; want a refusal naming the owner", nobody, l)
	}
	os.Remove(filepath.Join(foreign, "data-0.ring"))
}
