//go:build crossproc || chaos || cluster

package chaos

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pubsub-shm/pubsub-shm/bench/jvm"
	"github.com/pubsub-shm/pubsub-shm/pullerd/emulator"
)

// sparkOpens is what Spark 4 needs on Java 17 (jvm-reader/pom.xml's jvm.opens).
var sparkOpens = jvm.SparkFlags

// world is one pipe under test: the in-process emulator, a pullerd process, a Spark JVM
// running ChaosQuery (file sink), and the files they share: the ring root, the Spark
// checkpoint, the sink directory and the logs.
type world struct {
	t           testing.TB
	srv         *emulator.Server
	sub         string
	root        string // ring root (/dev/shm/pubsub-shm-chaos-*)
	work        string // checkpoint/, out/, logs/, tmp/
	pullerdArgs []string
	sparkArgs   []string

	procMu sync.Mutex // guards pd and spark for readers in other goroutines (procs)
	pd     *proc
	spark  *proc

	violMu     sync.Mutex
	violations []string
	stopCheck  chan struct{}
	checkDone  chan struct{}
}

// worldOptions tune newWorld.
type worldOptions struct {
	ackDeadline time.Duration // emulator subscription and pullerd lease; default 10 s
	partitions  int           // default 2
	pullerdArgs []string      // extra pullerd flags
	sparkArgs   []string      // extra ChaosQuery flags
}

// newWorld prepares (does not start) a pipe for subscription "chaos-sub".
func newWorld(t testing.TB, o worldOptions) *world {
	t.Helper()
	if o.ackDeadline == 0 {
		o.ackDeadline = 10 * time.Second
	}
	if o.partitions == 0 {
		o.partitions = 2
	}
	if _, err := jvm.Classpath(); err != nil {
		t.Fatalf("%v (run make jvm)", err)
	}
	w := &world{t: t, sub: "chaos-sub", root: shmRoot(t)}
	w.srv = newEmulator(t, o.ackDeadline, w.sub)
	var err error
	w.work, err = os.MkdirTemp("", "chaos-work-")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"logs", "out", "tmp"} {
		if err := os.MkdirAll(filepath.Join(w.work, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kept the work directory %s (logs, sink files, checkpoint)", w.work)
			return
		}
		os.RemoveAll(w.work)
	})
	np := strconv.Itoa(o.partitions)
	w.pullerdArgs = append([]string{"-subscription", w.sub, "-partitions", np, "-streams", np,
		"-ring-capacity", "4194304", "-ack-deadline", o.ackDeadline.String(), "-batch-rows", "500",
		"-reader-timeout", "2s", "-reader-grace", "2s", "-shutdown-timeout", "20s"}, o.pullerdArgs...)
	w.sparkArgs = append([]string{"--project", project, "--subscription", w.sub, "--ring-root", w.root,
		"--checkpoint", filepath.Join(w.work, "checkpoint"), "--out", filepath.Join(w.work, "out"),
		"--partitions", np, "--trigger", "500 milliseconds", "--stop-file", filepath.Join(w.work, "stop")}, o.sparkArgs...)
	return w
}

// procs returns the current pullerd and Spark processes.
func (w *world) procs() (pd, spark *proc) {
	w.procMu.Lock()
	defer w.procMu.Unlock()
	return w.pd, w.spark
}

func (w *world) logDir() string { return filepath.Join(w.work, "logs") }

// startPullerd starts pullerd (again) with the world's flags.
func (w *world) startPullerd() {
	w.t.Helper()
	p := startPullerd(w.t, w.srv, w.root, w.logDir(), w.pullerdArgs...)
	w.procMu.Lock()
	w.pd = p
	w.procMu.Unlock()
}

// startSpark starts the Spark JVM (again, from the same checkpoint) and waits until its
// query runs.
func (w *world) startSpark() {
	w.t.Helper()
	os.Remove(filepath.Join(w.work, "stop"))
	extra := append([]string{"-Xmx1g", "-Djava.io.tmpdir=" + filepath.Join(w.work, "tmp")}, sparkOpens...)
	cmd, err := jvm.Command(extra, "dev.pubsubshm.chaos.ChaosQuery", w.sparkArgs...)
	if err != nil {
		w.t.Fatal(err)
	}
	p := startProc(w.t, "spark", w.logDir(), cmd)
	w.procMu.Lock()
	w.spark = p
	w.procMu.Unlock()
	p.waitLine(w.t, 0, 3*time.Minute, "the query to start", func(l string) bool { return l == "chaos: started" })
}

// sparkBatchStart waits for the start of a micro-batch with id >= minID and returns its id.
func (w *world) sparkBatchStart(minID int64, timeout time.Duration) int64 {
	w.t.Helper()
	from := 0
	for {
		l, next := w.spark.waitLine(w.t, from, timeout, fmt.Sprintf("micro-batch >= %d", minID), func(l string) bool {
			return strings.HasPrefix(l, "chaos: batch ") && strings.HasSuffix(l, " start")
		})
		from = next
		id, _ := strconv.ParseInt(strings.Fields(l)[2], 10, 64)
		if id >= minID {
			return id
		}
	}
}

// stopSpark stops the query cleanly (the stop file) and checks that the JVM exits 0 with
// no Arrow memory allocated.
func (w *world) stopSpark() {
	w.t.Helper()
	if err := os.WriteFile(filepath.Join(w.work, "stop"), nil, 0o600); err != nil {
		w.t.Fatal(err)
	}
	select {
	case <-w.spark.done:
		if w.spark.waitErr != nil {
			w.t.Errorf("Spark exited with %v after a clean stop", w.spark.waitErr)
		}
	case <-time.After(2 * time.Minute):
		w.spark.kill()
		w.t.Errorf("Spark did not stop within 2 minutes of the stop file")
	}
	l, _, err := w.spark.nextLine(0, time.Second, func(l string) bool { return strings.HasPrefix(l, "chaos: stopped ") })
	if err != nil {
		w.t.Errorf("Spark did not report its Arrow memory at stop: %v", err)
	} else if l != "chaos: stopped arrow_allocated=0" {
		w.t.Errorf("Arrow memory still allocated after the query stopped: %q", l)
	}
}

// stopPullerd stops pullerd with SIGTERM, checks exit status 0 and an empty ring root.
func (w *world) stopPullerd() {
	w.t.Helper()
	if err := w.pd.term(time.Minute); err != nil {
		w.t.Errorf("pullerd after SIGTERM: %v", err)
	}
	if ents, _ := os.ReadDir(w.root); len(ents) > 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		w.t.Errorf("pullerd left %v in %s after a clean stop", names, w.root)
	}
}

// sinkRow is one row the sink wrote.
type sinkRow struct {
	crc      uint32
	size     int
	attrs    int
	attrsCRC uint32
}

// readSink reads every sink file: copies of each message id, the rows, and rows that do not
// parse.
func (w *world) readSink() (copies map[string]int, rows map[string]sinkRow, bad []string) {
	copies, rows = map[string]int{}, map[string]sinkRow{}
	files, _ := filepath.Glob(filepath.Join(w.work, "out", "batch-*.tsv"))
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			bad = append(bad, err.Error())
			continue
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			fs := strings.Split(sc.Text(), "\t")
			if len(fs) != 5 {
				bad = append(bad, fmt.Sprintf("%s: %q", filepath.Base(f), sc.Text()))
				continue
			}
			crc, e1 := strconv.ParseUint(fs[1], 10, 32)
			size, e2 := strconv.Atoi(fs[2])
			na, e3 := strconv.Atoi(fs[3])
			ac, e4 := strconv.ParseUint(fs[4], 10, 32)
			if e1 != nil || e2 != nil || e3 != nil || e4 != nil {
				bad = append(bad, fmt.Sprintf("%s: %q", filepath.Base(f), sc.Text()))
				continue
			}
			copies[fs[0]]++
			rows[fs[0]] = sinkRow{uint32(crc), size, na, uint32(ac)}
		}
		fh.Close()
	}
	return copies, rows, bad
}

// startChecker checks, every second until stopChecker, that every message the emulator has
// seen acknowledged is in the sink: acks before commits would break it. The acks are read
// first and the sink after, so a message acked at the first read was committed (and its
// sink file in place) before the second.
func (w *world) startChecker() {
	w.stopCheck, w.checkDone = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(w.checkDone)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-w.stopCheck:
				return
			case <-t.C:
			}
			w.checkAckedInSink()
		}
	}()
}

func (w *world) checkAckedInSink() {
	acked, _ := ackState(w.srv)
	copies, _, _ := w.readSink()
	for id := range acked {
		if copies[id] == 0 {
			w.violMu.Lock()
			if len(w.violations) < 20 {
				w.violations = append(w.violations, fmt.Sprintf("%s: message %s acked but in no sink file (acked before its micro-batch committed)",
					time.Now().Format("15:04:05.000"), id))
			}
			w.violMu.Unlock()
		}
	}
}

func (w *world) stopChecker() {
	if w.stopCheck != nil {
		close(w.stopCheck)
		<-w.checkDone
		w.stopCheck = nil
	}
	w.checkAckedInSink()
}

// report is the exact accounting at the end of a run.
type report struct {
	Published   int // messages the publisher got ids for
	Arrived     int // distinct published ids in the sink
	SinkRows    int
	Duplicates  int // SinkRows - Arrived
	MaxCopies   int
	Missing     int // published, never in the sink
	Unknown     int // in the sink, never published
	Corrupt     int // in the sink with other data or attributes than published
	Unacked     int // published, never acked
	AckedTwice  int // acked more than once (redelivered after a crash and acked again)
	Redelivered int // delivered by the emulator more than once
	Violations  []string
}

func (r report) String() string {
	return fmt.Sprintf("published %d, arrived %d, sink rows %d, duplicates %d (%.2f%%, max %d copies), missing %d, unknown %d, corrupt %d, unacked %d, acked twice %d, redelivered %d, ack-before-commit violations %d",
		r.Published, r.Arrived, r.SinkRows, r.Duplicates, 100*float64(r.Duplicates)/float64(max(1, r.Published)), r.MaxCopies,
		r.Missing, r.Unknown, r.Corrupt, r.Unacked, r.AckedTwice, r.Redelivered, len(r.Violations))
}

// tally counts the published messages that are in no sink row (copies: rows per id), and,
// from the emulator's own record, those never acked, acked more than once, and delivered
// more than once.
func (r *report) tally(srv *emulator.Server, published map[string]sent, copies map[string]int) {
	for id := range published {
		if copies[id] == 0 {
			r.Missing++
		}
	}
	for _, m := range srv.Messages() {
		if _, ok := published[m.ID]; !ok {
			continue
		}
		if m.Acks == 0 {
			r.Unacked++
		}
		if m.Acks > 1 {
			r.AckedTwice++
		}
		if m.Deliveries > 1 {
			r.Redelivered++
		}
	}
}

// account compares the sink and the emulator's records with what was published.
func (w *world) account(published map[string]sent) report {
	copies, rows, bad := w.readSink()
	r := report{Published: len(published), Corrupt: len(bad)}
	for id, n := range copies {
		r.SinkRows += n
		r.MaxCopies = max(r.MaxCopies, n)
		want, ok := published[id]
		if !ok {
			r.Unknown++
			continue
		}
		r.Arrived++
		got := rows[id]
		if got.crc != want.crc || got.size != want.size || got.attrs != want.attrs || got.attrsCRC != want.attrsCRC {
			r.Corrupt++
			if r.Corrupt <= 5 {
				w.t.Logf("message %s: sink has %+v, published %+v", id, got, want)
			}
		}
	}
	r.Duplicates = r.SinkRows - r.Arrived - r.Unknown
	r.tally(w.srv, published, copies)
	w.violMu.Lock()
	r.Violations = append([]string(nil), w.violations...)
	w.violMu.Unlock()
	return r
}

// drain waits until every published message is in the sink and acknowledged, or the
// timeout passes; it returns the last accounting.
func (w *world) drain(published map[string]sent, timeout time.Duration) report {
	deadline := time.Now().Add(timeout)
	for {
		r := w.account(published)
		if (r.Missing == 0 && r.Unacked == 0) || time.Now().After(deadline) {
			return r
		}
		if w.spark != nil && !w.spark.alive() {
			return r
		}
		time.Sleep(time.Second)
	}
}

// finish ends a test of the whole pipe: it waits for the publisher, drains (up to
// timeout), stops the checker, fails the test with "<failed>: <exit>" if the query is no
// longer running (failed empty: not checked), requires exact accounting with at most
// maxDupFrac duplicates, and stops Spark and pullerd.
func (w *world) finish(pub *publisher, timeout time.Duration, maxDupFrac float64, failed string) {
	w.t.Helper()
	published := pub.Wait()
	r := w.drain(published, timeout)
	w.stopChecker()
	if failed != "" && !w.spark.alive() {
		w.t.Errorf("%s: %v", failed, w.spark.waitErr)
	}
	w.requireExact(r, maxDupFrac)
	w.stopSpark()
	w.stopPullerd()
}

// requireExact fails the test unless the accounting is exact: nothing missing, unknown,
// corrupt or unacked, no ack before commit, and at most maxDupFrac duplicates.
func (w *world) requireExact(r report, maxDupFrac float64) {
	w.t.Helper()
	w.t.Logf("accounting: %s", r)
	if r.Missing > 0 || r.Unknown > 0 || r.Corrupt > 0 || r.Unacked > 0 || len(r.Violations) > 0 {
		w.t.Errorf("the pipe lost, invented, corrupted or left unacked messages, or acked before commit: %s\n%s", r, strings.Join(r.Violations, "\n"))
	}
	if r.Published == 0 || r.Arrived == 0 {
		w.t.Errorf("nothing went through; the test proves nothing: %s", r)
	}
	if float64(r.Duplicates) > maxDupFrac*float64(r.Published) {
		w.t.Errorf("%d duplicates, more than the bound %.0f%% of %d published", r.Duplicates, 100*maxDupFrac, r.Published)
	}
}
