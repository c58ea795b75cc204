//go:build cluster

package chaos

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	pb "cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"

	"github.com/pubsub-shm/pubsub-shm/bench/jvm"
	"github.com/pubsub-shm/pubsub-shm/pullerd/emulator"
)

// The cluster test (make cluster-test, -tags cluster): a real Spark standalone cluster on
// loopback. Master and driver on 127.0.0.1 (no pullerd, no rings there: the driver plans
// from the executors' plugin reports), and simulated executor hosts, each a private mount
// namespace with its own tmpfs on /dev/shm and its own loopback address (127.0.0.2, .3, ...),
// running its own pullerd and its own Spark Worker (one core, one executor). The ring root
// is the same path on every host, as on real hosts. Needs root (unshare, mount, nsenter).
//
// The Spark distribution is SPARK_HOME=<work>/spark-home: jars/ holds a symlink to every jar
// of jvm-reader/target/classpath.txt (the test runtime classpath make jvm writes, Spark 4.1.1
// at the pom's spark.version), conf/ a log4j2.properties. The driver runs on that same
// classpath, so driver and executors run exactly the same Spark; nothing is copied or
// downloaded, and the pom is untouched.

const (
	clusterSub  = "cluster-sub"
	clusterRoot = "/dev/shm/pubsub-shm-cluster" // the ring root on every simulated host
	clusterPort = "0"                           // Spark RPC and web UI ports: any free one
)

// simHost is one simulated executor host: a holder process owning a mount namespace with its
// own /dev/shm, and the pullerd and Spark Worker started in it.
type simHost struct {
	name   string // "a", "b", ...
	ip     string // 127.0.0.x
	holder *proc
	pd     *proc
	worker *proc
	logDir string
}

// nsenter is the prefix that runs a command in the host's mount namespace.
func (h *simHost) nsenter() []string {
	return []string{"nsenter", "-t", strconv.Itoa(h.holder.cmd.Process.Pid), "-m", "--"}
}

// shm returns a path inside the host's /dev/shm, as seen from the test process.
func (h *simHost) shm(p string) string {
	return filepath.Join("/proc", strconv.Itoa(h.holder.cmd.Process.Pid), "root", p)
}

// mntNS returns the mount namespace of a process ("mnt:[4026532...]").
func mntNS(pid int) string {
	l, _ := os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "ns", "mnt"))
	return l
}

// nsProcs returns the pids of the processes in the host's mount namespace, the holder
// excepted (its executors, which the Worker started, among them).
func (h *simHost) nsProcs() []int {
	ns := mntNS(h.holder.cmd.Process.Pid)
	if ns == "" {
		return nil
	}
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == h.holder.cmd.Process.Pid {
			continue
		}
		if mntNS(pid) == ns {
			out = append(out, pid)
		}
	}
	return out
}

// executorPids returns the pids of the executor JVMs running on the host.
func (h *simHost) executorPids() []int {
	var out []int
	for _, pid := range h.nsProcs() {
		b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
		if bytes.Contains(b, []byte("CoarseGrainedExecutorBackend")) {
			out = append(out, pid)
		}
	}
	return out
}

// killAll SIGKILLs every process in the host's namespace (executors, Worker, pullerd) and
// waits until none is left.
func (h *simHost) killAll(t testing.TB) {
	deadline := time.Now().Add(20 * time.Second)
	for {
		pids := h.nsProcs()
		if len(pids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("host %s: processes %v survive SIGKILL", h.name, pids)
			return
		}
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// cluster is the whole setup: emulator, Spark master, simulated hosts, driver.
type cluster struct {
	t         testing.TB
	srv       *emulator.Server
	work      string // spark-home/, logs/, out/, checkpoint/, tmp/, hosts/<name>/
	sparkHome string
	master    *proc
	masterURL string
	hosts     []*simHost
	driver    *proc
	canary    int64

	sink *sinkReader

	violMu     sync.Mutex
	violations []string
	stopCheck  chan struct{}
	checkDone  chan struct{}
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the cluster test needs root: it makes mount namespaces with their own /dev/shm (unshare, mount, nsenter)")
	}
	for _, tool := range []string{"unshare", "nsenter", "jcmd"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: %v", tool, err)
		}
	}
	if _, err := os.Stat(clusterRoot); err == nil {
		t.Fatalf("%s exists on the driver's host: the driver host must have no rings", clusterRoot)
	}
	c := &cluster{t: t, canary: 900_000_000 + rand.Int64N(99_999_999)}
	c.srv = newEmulator(t, 10*time.Second, clusterSub)
	var err error
	c.work, err = os.MkdirTemp("", "cluster-work-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kept the work directory %s (logs, Spark work dirs, sink files, checkpoint)", c.work)
			return
		}
		os.RemoveAll(c.work)
	})
	for _, d := range []string{"logs", "out", "tmp", "driver-local"} {
		if err := os.MkdirAll(filepath.Join(c.work, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		// The executors' logs (the Workers write them under their work dirs).
		logs, _ := filepath.Glob(filepath.Join(c.work, "hosts", "*", "worker", "app-*", "*", "std*"))
		for _, l := range logs {
			t.Logf("executor log %s, last 30 lines:\n%s", l, tailFile(l, 30))
		}
	})
	c.sink = &sinkReader{dir: filepath.Join(c.work, "out"), files: map[string][]clusterRow{}, meta: map[string][]string{}}
	c.makeSparkHome()
	return c
}

func (c *cluster) logDir() string { return filepath.Join(c.work, "logs") }

// makeSparkHome builds SPARK_HOME: jars/ (symlinks to the jars of target/classpath.txt, the
// test libraries left out) and conf/log4j2.properties (stdout, Spark's deploy messages at
// INFO so that the harness sees the master's URL and the Worker's registration).
func (c *cluster) makeSparkHome() {
	c.t.Helper()
	root, err := jvm.RepoRoot()
	if err != nil {
		c.t.Fatal(err)
	}
	cp, err := os.ReadFile(filepath.Join(root, "jvm-reader", "target", "classpath.txt"))
	if err != nil {
		c.t.Fatalf("%v (run make jvm)", err)
	}
	c.sparkHome = filepath.Join(c.work, "spark-home")
	jars := filepath.Join(c.sparkHome, "jars")
	conf := filepath.Join(c.sparkHome, "conf")
	for _, d := range []string{jars, conf} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			c.t.Fatal(err)
		}
	}
	n := 0
	for _, j := range strings.Split(strings.TrimSpace(string(cp)), string(os.PathListSeparator)) {
		base := filepath.Base(j)
		if strings.Contains(j, "/org/junit/") || strings.Contains(j, "/org/opentest4j/") || strings.Contains(j, "/org/apiguardian/") {
			continue
		}
		if err := os.Symlink(j, filepath.Join(jars, base)); err != nil {
			c.t.Fatalf("SPARK_HOME: %v", err)
		}
		n++
	}
	if n < 100 {
		c.t.Fatalf("SPARK_HOME: only %d jars in target/classpath.txt; is it Spark's classpath?", n)
	}
	log4j := `rootLogger.level = warn
rootLogger.appenderRef.stdout.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_OUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss.SSS} %p %c{1}: %m%n%ex
logger.deploy.name = org.apache.spark.deploy
logger.deploy.level = info
logger.pubsubshm.name = dev.pubsubshm
logger.pubsubshm.level = info
`
	if err := os.WriteFile(filepath.Join(conf, "log4j2.properties"), []byte(log4j), 0o644); err != nil {
		c.t.Fatal(err)
	}
}

// javaCmd is a JVM on SPARK_HOME's classpath (conf/ and jars/*), with Spark's opens.
func (c *cluster) javaCmd(wrap []string, jvmArgs []string, main string, args ...string) *exec.Cmd {
	java := "java"
	if h := os.Getenv("JAVA_HOME"); h != "" {
		java = filepath.Join(h, "bin", "java")
	}
	if p, err := exec.LookPath(java); err == nil {
		java = p
	}
	argv := append(append([]string(nil), wrap...), java)
	argv = append(argv, jvm.Flags...)
	argv = append(argv, sparkOpens...)
	argv = append(argv, jvmArgs...)
	argv = append(argv, "-cp", filepath.Join(c.sparkHome, "conf")+":"+filepath.Join(c.sparkHome, "jars", "*"), main)
	argv = append(argv, args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "SPARK_HOME="+c.sparkHome, "SPARK_SCALA_VERSION=2.13")
	return cmd
}

// startMaster starts the standalone Master on 127.0.0.1 (any free port) and reads its URL.
func (c *cluster) startMaster() {
	c.t.Helper()
	cmd := c.javaCmd(nil, []string{"-Xmx256m", "-Djava.io.tmpdir=" + filepath.Join(c.work, "tmp"), "-Dspark.master.rest.enabled=false"},
		"org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", clusterPort, "--webui-port", clusterPort)
	cmd.Env = append(cmd.Env, "SPARK_LOCAL_IP=127.0.0.1")
	c.master = startProc(c.t, "master", c.logDir(), cmd)
	l, _ := c.master.waitLine(c.t, 0, 2*time.Minute, "the master's URL", func(l string) bool {
		return strings.Contains(l, "Starting Spark master at spark://")
	})
	c.masterURL = l[strings.Index(l, "spark://"):]
	c.masterURL = strings.Fields(c.masterURL)[0]
	c.t.Logf("Spark master at %s", c.masterURL)
}

// addHost makes simulated host name at ip: the namespace with its tmpfs, then pullerd (root
// control socket only: the executors' plugin attaches the subscription), then the Worker.
func (c *cluster) addHost(name, ip string) *simHost {
	c.t.Helper()
	return c.addHostWith(name, ip, c.startPullerd)
}

// addHostWith is addHost with another producer of the host's rings than pullerd (ringgen).
func (c *cluster) addHostWith(name, ip string, producer func(h *simHost)) *simHost {
	c.t.Helper()
	h := &simHost{name: name, ip: ip, logDir: filepath.Join(c.work, "hosts", name)}
	for _, d := range []string{"worker", "local", "tmp"} {
		if err := os.MkdirAll(filepath.Join(h.logDir, d), 0o755); err != nil {
			c.t.Fatal(err)
		}
	}
	holder := exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c",
		"mount -t tmpfs -o size=512m,mode=1777 tmpfs /dev/shm && echo ready && exec sleep infinity")
	h.holder = startProc(c.t, "host-"+name, c.logDir(), holder)
	h.holder.waitLine(c.t, 0, 30*time.Second, "the namespace", func(l string) bool { return l == "ready" })
	// Runs before the holder's own cleanup (which kills it and with it the namespace and its
	// tmpfs): whatever still runs in the namespace, executors included, is killed.
	c.t.Cleanup(func() { h.killAll(c.t) })
	if mntNS(h.holder.cmd.Process.Pid) == mntNS(os.Getpid()) {
		c.t.Fatalf("host %s: the holder is in the test's own mount namespace", name)
	}
	c.hosts = append(c.hosts, h)
	producer(h)
	c.startWorker(h)
	return h
}

func (c *cluster) startPullerd(h *simHost) {
	c.t.Helper()
	p, err := tryStartPullerdVia(c.t, c.srv, clusterRoot, c.logDir(), "pullerd-"+h.name, h.nsenter(),
		// pullerd's default stagger (the harness's 1ms is for single-host tests): each stream's
		// first open waits a random time in [0, 2s).
		"-stagger", "2s",
		"-metrics-addr", h.ip+":0", "-ring-capacity", "8388608", "-ack-deadline", "10s",
		"-reader-timeout", "5s", "-reader-grace", "5s", "-shutdown-timeout", "20s")
	if err != nil {
		c.t.Fatal(err)
	}
	h.pd = p
	if _, err := os.Stat(h.shm(filepath.Join(clusterRoot, "control.sock"))); err != nil {
		c.t.Fatalf("host %s: pullerd's control socket is not in the host's /dev/shm: %v", h.name, err)
	}
}

// startWorker starts the host's Spark Worker in its namespace, one core, and waits until it
// registered with the master.
func (c *cluster) startWorker(h *simHost) {
	c.t.Helper()
	// Decommissioning on: SIGPWR makes the Worker leave gracefully (stopHost).
	cmd := c.javaCmd(h.nsenter(), []string{"-Xmx256m", "-Djava.io.tmpdir=" + filepath.Join(h.logDir, "tmp"),
		"-Dspark.decommission.enabled=true"},
		"org.apache.spark.deploy.worker.Worker", "--host", h.ip, "--port", clusterPort, "--webui-port", clusterPort,
		"--cores", "1", "--memory", "1g", "--work-dir", filepath.Join(h.logDir, "worker"), c.masterURL)
	cmd.Env = append(cmd.Env, "SPARK_LOCAL_IP="+h.ip, "SPARK_LOCAL_DIRS="+filepath.Join(h.logDir, "local"))
	h.worker = startProc(c.t, "worker-"+h.name, c.logDir(), cmd)
	h.worker.waitLine(c.t, 0, 2*time.Minute, "the worker to register", func(l string) bool {
		return strings.Contains(l, "Successfully registered with master")
	})
}

// startDriver starts ClusterQuery against the master and waits until the query runs.
func (c *cluster) startDriver(executors int, extra ...string) {
	c.t.Helper()
	root, _ := jvm.RepoRoot()
	jars, _ := filepath.Glob(filepath.Join(root, "jvm-reader", "target", "pubsub-shm-spark-*.jar"))
	if len(jars) != 1 {
		c.t.Fatalf("want one connector jar jvm-reader/target/pubsub-shm-spark-*.jar (make jvm), found %v", jars)
	}
	execOpts := append(append([]string{"-XX:+UseG1GC", "-Djava.io.tmpdir=" + filepath.Join(c.work, "tmp")}, jvm.Flags[:2]...), sparkOpens...)
	args := []string{"--project", project, "--subscription", clusterSub, "--ring-root", clusterRoot,
		"--checkpoint", filepath.Join(c.work, "checkpoint"), "--out", filepath.Join(c.work, "out"),
		"--stop-file", filepath.Join(c.work, "stop"), "--executors", strconv.Itoa(executors),
		"--canary", strconv.FormatInt(c.canary, 10), "--partitions", "2", "--trigger", "1 second",
		"--conf", "spark.master=" + c.masterURL,
		// The connector reaches the executors as a user would ship it: spark.jars only.
		"--conf", "spark.jars=" + jars[0],
		"--conf", "spark.plugins=dev.pubsubshm.spark.PubSubShmPlugin",
		// Executors leave gracefully when their Worker is decommissioned (stopHost).
		"--conf", "spark.decommission.enabled=true",
		"--conf", "spark.driver.host=127.0.0.1",
		"--conf", "spark.driver.bindAddress=127.0.0.1",
		"--conf", "spark.executor.memory=768m",
		"--conf", "spark.executor.cores=1",
		"--conf", "spark.executor.extraJavaOptions=" + strings.Join(execOpts, " "),
		"--conf", "spark.local.dir=" + filepath.Join(c.work, "driver-local"),
	}
	args = append(args, extra...)
	cmd, err := jvm.Command(append([]string{"-Xmx768m", "-Djava.io.tmpdir=" + filepath.Join(c.work, "tmp")}, sparkOpens...),
		"dev.pubsubshm.cluster.ClusterQuery", args...)
	if err != nil {
		c.t.Fatal(err)
	}
	cmd.Env = append(os.Environ(), "SPARK_LOCAL_IP=127.0.0.1")
	c.driver = startProc(c.t, "driver", c.logDir(), cmd)
	l, _ := c.driver.waitLine(c.t, 0, 3*time.Minute, "the executors", func(l string) bool {
		return strings.HasPrefix(l, "cluster: executors ") || strings.HasPrefix(l, "cluster: query failed")
	})
	c.t.Logf("driver: %s", l)
	c.driver.waitLine(c.t, 0, 3*time.Minute, "the query to start", func(l string) bool { return l == "cluster: started" })
}

// batchDone is one "cluster: batch <id> done <rows> <epoch ms> <duration ms>" line.
type batchDone struct {
	id, rows, atMs, durMs int64
}

func (c *cluster) batches() []batchDone {
	c.driver.mu.Lock()
	defer c.driver.mu.Unlock()
	var out []batchDone
	for _, l := range c.driver.lines {
		f := strings.Fields(l)
		if len(f) == 7 && f[0] == "cluster:" && f[1] == "batch" && f[3] == "done" {
			var b batchDone
			b.id, _ = strconv.ParseInt(f[2], 10, 64)
			b.rows, _ = strconv.ParseInt(f[4], 10, 64)
			b.atMs, _ = strconv.ParseInt(f[5], 10, 64)
			b.durMs, _ = strconv.ParseInt(f[6], 10, 64)
			out = append(out, b)
		}
	}
	return out
}

// waitBatches waits until n micro-batches with rows are done.
func (c *cluster) waitBatches(n int, timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		k := 0
		for _, b := range c.batches() {
			if b.rows > 0 {
				k++
			}
		}
		if k >= n {
			return
		}
		if !c.driver.alive() || time.Now().After(deadline) {
			c.t.Fatalf("%d micro-batches with rows, want %d (driver alive: %v)\n%s", k, n, c.driver.alive(), tailFile(c.driver.logPath, 40))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// clusterRow is one row of the file sink.
type clusterRow struct {
	ID   string `json:"message_id"`
	CRC  int64  `json:"crc"`
	Len  int    `json:"len"`
	Host string `json:"host"`
}

// sinkReader reads the file sink: the part files, and the sink's commit log
// (out/_spark_metadata: one file per micro-batch, a JSON line per file the batch added, with
// compactions every 10 batches). A part file is committed once a metadata entry names it;
// part files of failed or aborted tasks stay out. Parsed files are cached (files are never
// rewritten once renamed into place).
type sinkReader struct {
	dir   string
	mu    sync.Mutex
	files map[string][]clusterRow // part file -> rows
	meta  map[string][]string     // metadata log file -> part files it adds
	bad   []string
}

// readPart reads a part file. Part files are written in place by the tasks (the file sink
// has no temporary name), so only committed ones, complete by then, are cached.
func (s *sinkReader) readPart(path string, committed bool) []clusterRow {
	if rows, ok := s.files[path]; ok {
		return rows
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil // not there (yet): read again next time
	}
	var rows []clusterRow
	for _, l := range bytes.Split(b, []byte("\n")) {
		if len(l) == 0 {
			continue
		}
		var r clusterRow
		if err := json.Unmarshal(l, &r); err != nil || r.ID == "" {
			if committed {
				s.bad = append(s.bad, fmt.Sprintf("%s: %q", filepath.Base(path), l))
			}
			continue
		}
		rows = append(rows, r)
	}
	if committed {
		s.files[path] = rows
	}
	return rows
}

// committed returns the part files named by the metadata log.
func (s *sinkReader) committed() []string {
	md := filepath.Join(s.dir, "_spark_metadata")
	ents, _ := os.ReadDir(md)
	set := map[string]bool{}
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, ".") || e.IsDir() {
			continue
		}
		paths, ok := s.meta[name]
		if !ok {
			b, err := os.ReadFile(filepath.Join(md, name))
			if err != nil {
				continue
			}
			sc := bufio.NewScanner(bytes.NewReader(b))
			sc.Buffer(make([]byte, 1<<20), 16<<20)
			first := true
			for sc.Scan() {
				if first { // "v1"
					first = false
					continue
				}
				var m struct {
					Path   string `json:"path"`
					Action string `json:"action"`
				}
				if json.Unmarshal(sc.Bytes(), &m) != nil || m.Action != "add" {
					continue
				}
				p := m.Path
				if u, err := url.Parse(p); err == nil && u.Scheme == "file" {
					p = u.Path
				}
				paths = append(paths, p)
			}
			s.meta[name] = paths
		}
		for _, p := range paths {
			set[p] = true
		}
	}
	out := make([]string, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// read returns the rows of the committed part files and the lines that did not parse.
func (s *sinkReader) read() (committed []clusterRow, bad []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.committed() {
		committed = append(committed, s.readPart(p, true)...)
	}
	return committed, append([]string(nil), s.bad...)
}

// allRows counts the rows of every part file, committed or not (files of failed tasks or
// of micro-batches replayed after a failure would show up here only).
func (s *sinkReader) allRows() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	parts, _ := filepath.Glob(filepath.Join(s.dir, "part-*"))
	for _, p := range parts {
		n += len(s.readPart(p, false))
	}
	return n
}

// startChecker checks every second that every message the emulator has seen acknowledged is
// in a committed sink file: the acks are read first, the sink after.
func (c *cluster) startChecker() {
	c.stopCheck, c.checkDone = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(c.checkDone)
		tk := time.NewTicker(time.Second)
		defer tk.Stop()
		for {
			select {
			case <-c.stopCheck:
				return
			case <-tk.C:
			}
			c.checkAckedInSink()
		}
	}()
}

func (c *cluster) checkAckedInSink() {
	acked, _ := ackState(c.srv)
	rows, _ := c.sink.read()
	in := make(map[string]bool, len(rows))
	for _, r := range rows {
		in[r.ID] = true
	}
	for id := range acked {
		if !in[id] {
			c.violMu.Lock()
			if len(c.violations) < 20 {
				c.violations = append(c.violations, fmt.Sprintf("%s: message %s acked but in no committed sink file (acked before its micro-batch committed)",
					time.Now().Format("15:04:05.000"), id))
			}
			c.violMu.Unlock()
		}
	}
}

func (c *cluster) stopChecker() {
	if c.stopCheck != nil {
		close(c.stopCheck)
		<-c.checkDone
		c.stopCheck = nil
	}
	c.checkAckedInSink()
}

// clusterReport is the exact accounting at the end.
type clusterReport struct {
	report
	AllFileRows int            // rows in every part file, committed or not
	PerHost     map[string]int // committed rows by the executor host that read them
}

func (c *cluster) account(published map[string]sent) clusterReport {
	rows, bad := c.sink.read()
	r := clusterReport{report: report{Published: len(published), Corrupt: len(bad)}, AllFileRows: c.sink.allRows(), PerHost: map[string]int{}}
	copies := map[string]int{}
	for _, row := range rows {
		r.SinkRows++
		r.PerHost[row.Host]++
		copies[row.ID]++
		want, ok := published[row.ID]
		if !ok {
			if copies[row.ID] == 1 {
				r.Unknown++
			}
			continue
		}
		if uint32(row.CRC) != want.crc || row.Len != want.size {
			r.Corrupt++
			if r.Corrupt <= 5 {
				c.t.Logf("message %s: sink has crc %d len %d, published crc %d len %d", row.ID, row.CRC, row.Len, want.crc, want.size)
			}
		}
	}
	for id, n := range copies {
		r.MaxCopies = max(r.MaxCopies, n)
		if _, ok := published[id]; ok {
			r.Arrived++
		}
	}
	r.Duplicates = r.SinkRows - len(copies)
	r.tally(c.srv, published, copies)
	c.violMu.Lock()
	r.Violations = append([]string(nil), c.violations...)
	c.violMu.Unlock()
	return r
}

// drain waits until every published message is in the committed sink and acknowledged.
func (c *cluster) drain(published map[string]sent, timeout time.Duration) clusterReport {
	deadline := time.Now().Add(timeout)
	for {
		r := c.account(published)
		if (r.Missing == 0 && r.Unacked == 0) || time.Now().After(deadline) || !c.driver.alive() {
			return r
		}
		time.Sleep(time.Second)
	}
}

func (c *cluster) requireExact(r clusterReport) {
	c.t.Helper()
	c.t.Logf("accounting: %s; rows in all part files %d; committed rows per host %v", r.report, r.AllFileRows, r.PerHost)
	if r.Missing > 0 || r.Unknown > 0 || r.Corrupt > 0 || r.Unacked > 0 || len(r.Violations) > 0 {
		c.t.Errorf("the cluster lost, invented, corrupted or left unacked messages, or acked before commit: %s\n%s",
			r.report, strings.Join(r.Violations, "\n"))
	}
	if r.Published == 0 || r.Arrived == 0 {
		c.t.Errorf("nothing went through; the test proves nothing: %s", r.report)
	}
}

// stopDriver stops the query with the stop file and checks a clean exit.
func (c *cluster) stopDriver() {
	c.t.Helper()
	if err := os.WriteFile(filepath.Join(c.work, "stop"), nil, 0o600); err != nil {
		c.t.Fatal(err)
	}
	select {
	case <-c.driver.done:
		if c.driver.waitErr != nil {
			c.t.Errorf("the driver exited with %v after a clean stop", c.driver.waitErr)
		}
	case <-time.After(2 * time.Minute):
		c.driver.kill()
		c.t.Errorf("the driver did not stop within 2 minutes of the stop file")
	}
	if _, _, err := c.driver.nextLine(0, time.Second, func(l string) bool { return strings.HasPrefix(l, "cluster: stopped") }); err != nil {
		c.t.Errorf("the driver did not report a clean stop: %v", err)
	}
}

// stopHost stops a host gracefully: SIGTERM to its Worker (its executors exit with it), then
// to its pullerd, which must exit 0 and leave its ring root empty.
func (c *cluster) stopHost(h *simHost) {
	c.t.Helper()
	if h.worker.alive() {
		// Decommission first (SIGPWR): the master stops placing executors on the Worker and its
		// executors finish their tasks and exit. A bare SIGTERM races with the master, which
		// asks the stopping Worker to replace the executor it just killed: Spark 4.1 then
		// starts an executor whose Worker is gone ("Shutdown hooks cannot be modified during
		// shutdown") and that runs on.
		h.worker.cmd.Process.Signal(syscall.SIGPWR)
		deadline := time.Now().Add(time.Minute)
		for len(h.executorPids()) > 0 && time.Now().Before(deadline) {
			time.Sleep(200 * time.Millisecond)
		}
		if pids := h.executorPids(); len(pids) > 0 {
			c.t.Errorf("host %s: executors %v still run a minute after their Worker was decommissioned (SIGPWR)", h.name, pids)
		}
		h.worker.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-h.worker.done:
		case <-time.After(time.Minute):
			c.t.Errorf("host %s: the Worker did not exit within a minute of SIGTERM", h.name)
			h.worker.kill()
		}
	}
	deadline := time.Now().Add(time.Minute)
	for len(h.executorPids()) > 0 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	if pids := h.executorPids(); len(pids) > 0 {
		c.t.Errorf("host %s: executors %v still run a minute after their Worker stopped", h.name, pids)
	}
	if err := h.pd.term(time.Minute); err != nil {
		c.t.Errorf("host %s: pullerd after SIGTERM: %v", h.name, err)
	}
	root := h.shm(clusterRoot)
	if ents, _ := os.ReadDir(root); len(ents) > 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		c.t.Errorf("host %s: pullerd left %v in %s after a clean stop", h.name, names, clusterRoot)
	}
}

// isAckID reports whether "<id>:<delivery>" is an ack id the emulator handed out: pstest
// numbers deliveries from 1, up to the message's delivery count.
func (c *cluster) isAckID(published map[string]sent, id, delivery string) bool {
	if _, ok := published[id]; !ok {
		return false
	}
	d, err := strconv.Atoi(delivery)
	if err != nil || d < 1 {
		return false
	}
	m := c.srv.Message(id)
	return m != nil && d <= m.Deliveries
}

// heapScan dumps the driver's heap (every object, unreachable ones included) and looks for
// strings shaped like the emulator's ack ids: pstest forms them as "<message id>:<delivery
// count>", message ids as "m<n>" ("m12345:1"). The driver's canary ("m<canary>:7") must be
// found: the check can fail. Any other match is a real ack id (its message id was published
// and its delivery count is one the emulator handed out) or something else shaped like one,
// such as a few bytes of binary data in the dump that happen to read "m91:0" (reported).
func (c *cluster) heapScan(published map[string]sent) (canary int, real, other []string) {
	c.t.Helper()
	dump := filepath.Join(c.work, "tmp", "driver.hprof")
	out, err := exec.Command("jcmd", strconv.Itoa(c.driver.cmd.Process.Pid), "GC.heap_dump", "-all", dump).CombinedOutput()
	if err != nil {
		c.t.Fatalf("jcmd GC.heap_dump: %v\n%s", err, out)
	}
	defer os.Remove(dump)
	b, err := os.ReadFile(dump)
	if err != nil {
		c.t.Fatalf("heap dump: %v\n%s", err, out)
	}
	c.t.Logf("driver heap dump: %d MB", len(b)>>20)
	want := fmt.Sprintf("m%d:7", c.canary)
	isAlnum := func(x byte) bool {
		return x >= '0' && x <= '9' || x >= 'a' && x <= 'z' || x >= 'A' && x <= 'Z' || x == '_'
	}
	isDigit := func(x byte) bool { return x >= '0' && x <= '9' }
	seen := map[string]bool{}
	for i := 0; i < len(b); i++ {
		if b[i] != 'm' || (i > 0 && isAlnum(b[i-1])) {
			continue
		}
		j := i + 1
		for j < len(b) && isDigit(b[j]) {
			j++
		}
		if j == i+1 || j >= len(b) || b[j] != ':' {
			continue
		}
		k := j + 1
		for k < len(b) && isDigit(b[k]) {
			k++
		}
		if k == j+1 || (k < len(b) && isAlnum(b[k])) {
			continue
		}
		s := string(b[i:k])
		switch {
		case s == want:
			canary++
		case !seen[s]:
			seen[s] = true
			if c.isAckID(published, string(b[i:j]), string(b[j+1:k])) {
				real = append(real, s)
			} else {
				other = append(other, s)
			}
		}
	}
	return canary, real, other
}

// clusterMessage: 1 KiB of random bytes, no attributes.
func clusterMessage(i int) *pb.PubsubMessage {
	r := rand.New(rand.NewPCG(uint64(i), 7))
	data := make([]byte, 1024)
	for j := 0; j < len(data); j += 8 {
		v := r.Uint64()
		for k := 0; k < 8; k++ {
			data[j+k] = byte(v >> (8 * k))
		}
	}
	return &pb.PubsubMessage{Data: data}
}

// throughput returns the rows per second over the steady part of the run: the micro-batches
// with rows, the first one left out (it holds what piled up while the query started), from
// the trigger of the second to the end of the last.
func throughput(bs []batchDone) (rows int64, secs float64) {
	var nz []batchDone
	for _, b := range bs {
		if b.rows > 0 {
			nz = append(nz, b)
		}
	}
	if len(nz) < 3 {
		return 0, 0
	}
	for _, b := range nz[1:] {
		rows += b.rows
	}
	last := nz[len(nz)-1]
	secs = float64(last.atMs+last.durMs-nz[1].atMs) / 1000
	return rows, secs
}

// TestClusterTwoHosts: a real Spark standalone cluster with two simulated executor hosts,
// each with its own pullerd and /dev/shm. 60,000 messages of 1 KiB are published at a steady
// rate while the query runs; at the end every one is in the committed file sink with the
// right CRC and length, nothing unknown, all acked, none acked before its micro-batch was
// committed, both pullerds acked a share, and the driver's heap holds no ack id.
func TestClusterTwoHosts(t *testing.T) {
	const n, rate = 60000, 3000
	start := time.Now()
	c := newCluster(t)
	c.startMaster()
	a := c.addHost("a", "127.0.0.2")
	b := c.addHost("b", "127.0.0.3")
	c.startDriver(2)
	t.Logf("cluster up in %v", time.Since(start).Round(time.Millisecond))
	c.startChecker()
	pubStart := time.Now()
	pub := startPublisher(c.srv, rate, n, clusterMessage)

	c.waitBatches(4, 2*time.Minute)
	canary, real, other := c.heapScan(pub.published())
	t.Logf("driver heap: canary found %d times, %d real ack ids, %d other ack-id-shaped strings %.200v", canary, len(real), len(other), other)
	if canary == 0 {
		t.Errorf("the heap scan did not find the driver's canary m%d:7: the scan is broken", c.canary)
	}
	if len(real) > 0 {
		t.Errorf("the driver's heap holds %d ack ids of published messages, e.g. %.300v", len(real), real)
	}

	published := pub.Wait()
	pubSecs := time.Since(pubStart).Seconds()
	r := c.drain(published, 3*time.Minute)
	c.stopChecker()
	if !c.driver.alive() {
		t.Errorf("the query stopped: %v\n%s", c.driver.waitErr, tailFile(c.driver.logPath, 30))
	}
	c.requireExact(r)
	for _, h := range []*simHost{a, b} {
		m := h.pd.metricsAddr(t)
		recv, acks := metricValue(t, m, "pullerd_messages_received_total"), metricValue(t, m, "pullerd_acks_sent_total")
		t.Logf("host %s (%s): pullerd received %v messages, sent %v acks; %d committed sink rows read there", h.name, h.ip, recv, acks, r.PerHost[h.ip])
		if recv == 0 || acks == 0 || r.PerHost[h.ip] == 0 {
			t.Errorf("host %s did not take a share: pullerd received %v, acked %v, sink rows read there %d", h.name, recv, acks, r.PerHost[h.ip])
		}
	}
	c.checkStreams(2 * 2) // 2 executors of 1 core: the default budget is 4 streams
	rows, secs := throughput(c.batches())
	line, _ := json.Marshal(map[string]any{
		"test": "cluster", "executors": 2, "hosts": 2, "published": n, "msg_bytes": 1024, "publish_rate": rate,
		"publish_s": round2(pubSecs), "steady_rows": rows, "steady_s": round2(secs), "msgs_per_s": round2(float64(rows) / max(secs, 1e-9)),
		"batches": len(c.batches()), "duplicates": r.Duplicates, "per_host": r.PerHost, "total_s": round2(time.Since(start).Seconds()),
	})
	fmt.Println(string(line))

	c.stopDriver()
	for _, h := range []*simHost{a, b} {
		c.stopHost(h)
	}
	t.Logf("done in %v", time.Since(start).Round(time.Millisecond))
}

func round2(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }

// hostShare returns what a host's pullerd received and acked, and the committed sink rows
// its executor read.
func (c *cluster) hostShare(h *simHost) (recv, acks float64, rows int) {
	c.t.Helper()
	m := h.pd.metricsAddr(c.t)
	recv, acks = metricValue(c.t, m, "pullerd_messages_received_total"), metricValue(c.t, m, "pullerd_acks_sent_total")
	committed, _ := c.sink.read()
	for _, r := range committed {
		if r.Host == h.ip {
			rows++
		}
	}
	return recv, acks, rows
}

// TestClusterScaling: hosts come and go under a running query while publishing goes on.
// (a) host C (127.0.0.4, its own namespace, pullerd and Worker) joins: its executor must get
// work (its pullerd receives and acks, the sink has rows read there); (b) host B leaves
// gracefully (SIGTERM to its Worker, its executor exits, then SIGTERM to its pullerd);
// (c) host C dies (SIGKILL to its executor, Worker and pullerd). At the end every message is
// in the committed sink (duplicates allowed: what the lost hosts held is redelivered), all
// acked, none acked before its micro-batch committed. Batches planned on a host that is
// gone are skipped (the driver abandons those ring incarnations), their messages redelivered.
// Default source options (failOnDataLoss=true): a host leaving is not data loss, since its
// pullerd never acked what the query did not read.
func TestClusterScaling(t *testing.T) {
	const rate = 2000
	start := time.Now()
	c := newCluster(t)
	c.startMaster()
	a := c.addHost("a", "127.0.0.2")
	b := c.addHost("b", "127.0.0.3")
	c.startDriver(2) // default options: failOnDataLoss=true
	c.startChecker()
	pub := startPublisher(c.srv, rate, 0, clusterMessage)
	defer pub.Stop()
	c.waitBatches(3, 2*time.Minute)

	// (a) host C joins.
	hc := c.addHost("c", "127.0.0.4")
	joined := time.Now()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		recv, acks, rows := c.hostShare(hc)
		if recv > 0 && acks > 0 && rows > 0 {
			t.Logf("(a) host c got work %v after its Worker registered: pullerd received %v, acked %v, %d sink rows read there (%d published so far)",
				time.Since(joined).Round(time.Millisecond), recv, acks, rows, pub.count())
			if reg := c.executorAddedMs(hc.ip); reg > 0 {
				after := 0
				for _, b := range c.batches() {
					if b.atMs > reg {
						after++
					}
				}
				t.Logf("(a) host c's executor registered with the driver %v before its rows were in the committed sink; "+
					"micro-batches started since it registered: %d (its first rows are in the last of them at the latest)",
					time.Since(time.UnixMilli(reg)).Round(time.Millisecond), after)
			}
			break
		}
		if time.Now().After(deadline) || !c.driver.alive() {
			t.Fatalf("(a) host c got no work within 2 minutes: pullerd received %v, acked %v, %d sink rows read there (driver alive %v)",
				recv, acks, rows, c.driver.alive())
		}
		time.Sleep(500 * time.Millisecond)
	}

	// (b) host B leaves gracefully.
	before := len(c.batches())
	c.stopHost(b)
	t.Logf("(b) host b stopped (Worker, executor, pullerd) after %d published", pub.count())
	c.waitMoreBatches(before+3, 2*time.Minute)

	// (c) host C dies.
	before = len(c.batches())
	pids := append(hc.executorPids(), hc.worker.cmd.Process.Pid, hc.pd.cmd.Process.Pid)
	hc.killAll(t)
	t.Logf("(c) host c killed (SIGKILL to %v) after %d published", pids, pub.count())
	c.waitMoreBatches(before+3, 2*time.Minute)

	published := pub.Stop()
	r := c.drain(published, 3*time.Minute)
	c.stopChecker()
	if !c.driver.alive() {
		t.Errorf("the query stopped: %v\n%s", c.driver.waitErr, tailFile(c.driver.logPath, 30))
	}
	c.requireExact(r)
	c.checkStreams(2 * 3) // at most 3 executors of 1 core at once
	// Whether a micro-batch still needed a ring of a host that left depends on timing:
	// logged, not asserted (CommitBoardTest and the accounting above cover it).
	abandoned := strings.Count(readFileString(c.driver.logPath), "left the cluster; its ring incarnation")
	skipped := 0
	logs, _ := filepath.Glob(filepath.Join(c.work, "hosts", "*", "worker", "app-*", "*", "std*"))
	for _, l := range logs {
		skipped += strings.Count(readFileString(l), "skipped: host")
	}
	t.Logf("ring incarnations abandoned by the driver: %d; slices skipped by tasks: %d", abandoned, skipped)
	c.stopDriver()
	c.stopHost(a)
	t.Logf("done in %v", time.Since(start).Round(time.Millisecond))
}

// checkStreams fails the test if more StreamingPull streams than budget were ever open at
// once for the subscription (every pullerd runs 2 x cores = 4 streams on its own on this
// 2-core machine, so without the driver's shares two hosts would open 8), and logs when the
// streams opened, relative to the first.
func (c *cluster) checkStreams(budget int) {
	c.t.Helper()
	st := c.srv.StreamStats(clusterSub)
	var at []string
	for _, ts := range st.OpenTimes {
		at = append(at, fmt.Sprintf("+%dms", ts.Sub(st.OpenTimes[0]).Milliseconds()))
	}
	c.t.Logf("StreamingPull streams: at most %d open at once (budget %d), %d opened in all, at %v", st.Peak, budget, st.Opens, at)
	if st.Peak == 0 || st.Peak > budget {
		c.t.Errorf("StreamingPull streams: %d open at once, want 1..%d (the cluster's budget)", st.Peak, budget)
	}
}

// executorAddedMs returns when the driver saw an executor on host register (epoch ms, the
// latest one), 0 if none did.
func (c *cluster) executorAddedMs(host string) int64 {
	c.driver.mu.Lock()
	defer c.driver.mu.Unlock()
	var at int64
	for _, l := range c.driver.lines {
		f := strings.Fields(l)
		if len(f) == 6 && f[0] == "cluster:" && f[1] == "executor" && f[2] == "added" && f[4] == host {
			at, _ = strconv.ParseInt(f[5], 10, 64)
		}
	}
	return at
}

// readFileString returns a file's contents, "" if it cannot be read.
func readFileString(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// waitMoreBatches waits until n micro-batches (with rows or not) are done in all.
func (c *cluster) waitMoreBatches(n int, timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for len(c.batches()) < n {
		if !c.driver.alive() || time.Now().After(deadline) {
			c.t.Fatalf("%d micro-batches, want %d (driver alive: %v)\n%s", len(c.batches()), n, c.driver.alive(), tailFile(c.driver.logPath, 20))
		}
		time.Sleep(200 * time.Millisecond)
	}
}
