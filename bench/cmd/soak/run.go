package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pubsub-shm/pubsub-shm/bench/jvm"
	"github.com/pubsub-shm/pubsub-shm/bench/plot"
	"github.com/pubsub-shm/pubsub-shm/bench/synth"
	"github.com/pubsub-shm/pubsub-shm/ringbuf"
	"github.com/pubsub-shm/pubsub-shm/ringbuf/arrowbatch"
)

// jvmSecond is one per-second line of SoakConsumer (see its doc), or its final line.
type jvmSecond struct {
	Ready            bool    `json:"ready"`
	Final            bool    `json:"final"`
	T                float64 `json:"t_s"`
	Msgs             int64   `json:"msgs"`
	Bytes            int64   `json:"bytes"`
	Batches          int64   `json:"batches"`
	MsgsTotal        int64   `json:"msgs_total"`
	BytesTotal       int64   `json:"bytes_total"`
	BatchesTotal     int64   `json:"batches_total"`
	P50LatencyUs     float64 `json:"p50_latency_us"`
	P99LatencyUs     float64 `json:"p99_latency_us"`
	P999LatencyUs    float64 `json:"p999_latency_us"`
	MaxLatencyUs     float64 `json:"max_latency_us"`
	GCCount          int64   `json:"gc_count"`
	GCTimeMs         int64   `json:"gc_time_ms"`
	AllocBytes       int64   `json:"alloc_bytes"`
	CPUNs            int64   `json:"cpu_ns"`
	HeapUsedBytes    int64   `json:"heap_used_bytes"`
	RSSBytes         int64   `json:"rss_bytes"`
	ChecksumFailures int64   `json:"checksum_failures"`
	Lost             int64   `json:"lost"`
	Duplicates       int64   `json:"duplicates"`
	BadIDs           int64   `json:"bad_ids"`
	NextIDs          []int64 `json:"next_ids"`
}

// Second is one second of the soak in soak.json.
type Second struct {
	T                float64 `json:"t_s"`
	Msgs             int64   `json:"msgs"`
	Bytes            int64   `json:"bytes"`
	ProducedBytes    int64   `json:"produced_bytes"`
	P50LatencyUs     float64 `json:"p50_latency_us"`
	P99LatencyUs     float64 `json:"p99_latency_us"`
	P999LatencyUs    float64 `json:"p999_latency_us"`
	MaxLatencyUs     float64 `json:"max_latency_us"`
	JVMGCCount       int64   `json:"jvm_gc_count"`
	JVMGCTimeMs      int64   `json:"jvm_gc_time_ms"`
	JVMAllocBytes    int64   `json:"jvm_alloc_bytes"`
	JVMCPUNs         int64   `json:"jvm_cpu_ns"`
	JVMHeapUsedBytes int64   `json:"jvm_heap_used_bytes"`
	JVMRSSBytes      int64   `json:"jvm_rss_bytes"`
	GoRSSBytes       int64   `json:"go_rss_bytes"`
	RingFill         float64 `json:"ring_fill"`      // fullest ring, fraction of capacity
	RingSetBytes     int64   `json:"ring_set_bytes"` // /dev/shm blocks held by this soak's ring files
	ShmUsedBytes     int64   `json:"shm_used_bytes"` // /dev/shm in use by everyone (informational)
	ChecksumFailures int64   `json:"checksum_failures"`
	Lost             int64   `json:"lost"`
	Duplicates       int64   `json:"duplicates"`
}

// Summary of the whole run.
type Summary struct {
	Seconds          int     `json:"seconds"`
	Msgs             int64   `json:"msgs"`
	Bytes            int64   `json:"bytes"`
	MeanBytesPerS    float64 `json:"mean_bytes_per_s"`   // measured seconds (after the warm-up)
	MinWindowBytesPS float64 `json:"min_5s_bytes_per_s"` // lowest 5-second window, measured seconds
	P50LatencyUs     float64 `json:"p50_latency_us"`     // whole run (JVM)
	P99LatencyUs     float64 `json:"p99_latency_us"`     // whole run (JVM)
	P999LatencyUs    float64 `json:"p999_latency_us"`    // whole run (JVM)
	MaxP99LatencyUs  float64 `json:"max_p99_latency_us"` // worst second, measured seconds
	JVMAllocPerMsg   float64 `json:"jvm_alloc_bytes_per_msg"`
	JVMGCCount       int64   `json:"jvm_gc_count"`
	JVMGCTimeMs      int64   `json:"jvm_gc_time_ms"`
	JVMCPUSPerGB     float64 `json:"jvm_cpu_s_per_gb"`
	GoCPUSPerGB      float64 `json:"go_cpu_s_per_gb"`
	ChecksumFailures int64   `json:"checksum_failures"`
	Lost             int64   `json:"lost"`
	Duplicates       int64   `json:"duplicates"`
	BadIDs           int64   `json:"bad_ids"`
	CommitErrors     int64   `json:"commit_errors"` // batches committed twice, unknown, or never
	GoRSSGrowth      int64   `json:"go_rss_growth_bytes"`
	JVMRSSGrowth     int64   `json:"jvm_rss_growth_bytes"`
	ShmGrowth        int64   `json:"shm_growth_bytes"`
	RateSustained    bool    `json:"rate_sustained"`
	Intact           bool    `json:"intact"` // nothing lost, repeated, corrupt; every batch committed once
	MemoryBounded    bool    `json:"memory_bounded"`
	LatencyGoalMet   bool    `json:"latency_goal_met"` // p99 < 1 ms over the run
}

// Report is soak.json.
type Report struct {
	Config  reportConfig `json:"config"`
	Seconds []Second     `json:"per_second"`
	Summary Summary      `json:"summary"`
	Verdict string       `json:"verdict"`
	Pass    bool         `json:"pass"`
}

// part is one DATA ring with its producer.
type part struct {
	ring     *ringbuf.Ring
	produced atomic.Int64 // payload bytes written
	msgs     atomic.Int64
	mu       sync.Mutex
	pending  map[int64]int32 // batch id -> rows, written and not yet committed
	early    map[int64]int   // batch id -> commits seen before the producer recorded the batch
	batches  int64
	bad      int64 // commits of unknown or already committed batches
}

func run(ctx context.Context, cfg config, stderr io.Writer) (*Report, error) {
	root := ringbuf.DefaultDir()
	if err := ringbuf.EnsureDir(root); err != nil {
		return nil, err
	}
	defer os.Remove(root) // only if empty
	dir, err := os.MkdirTemp(root, "soak-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	schema, err := arrowbatch.SchemaMessage()
	if err != nil {
		return nil, err
	}
	commitRing, err := ringbuf.Create(filepath.Join(dir, "commit.ring"), ringbuf.CreateOptions{Kind: ringbuf.KindCommit, Capacity: 1 << 20})
	if err != nil {
		return nil, err
	}
	defer commitRing.Close()
	cr, err := ringbuf.NewCommitReader(commitRing)
	if err != nil {
		return nil, err
	}
	parts := make([]*part, cfg.Partitions)
	names := make([]string, cfg.Partitions)
	for p := range parts {
		r, err := ringbuf.Create(filepath.Join(dir, fmt.Sprintf("data-%d.ring", p)),
			ringbuf.CreateOptions{Kind: ringbuf.KindData, Capacity: cfg.Capacity, Partition: int32(p), Schema: schema})
		if err != nil {
			return nil, err
		}
		defer r.Close()
		parts[p] = &part{ring: r, pending: map[int64]int32{}, early: map[int64]int{}}
		names[p] = strconv.Itoa(p)
	}
	cmd, err := jvm.Command(cfg.JVMOpts, "dev.pubsubshm.bench.SoakConsumer", "--dir", dir, "--partitions", strings.Join(names, ","),
		"--max-park-us", strconv.FormatInt(max(1, cfg.MaxPark.Microseconds()), 10))
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var jvmErr strings.Builder
	var jvmErrMu sync.Mutex
	cmd.Stderr = writerFunc(func(b []byte) (int, error) {
		jvmErrMu.Lock()
		defer jvmErrMu.Unlock()
		return jvmErr.Write(b)
	})
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start JVM: %w", err)
	}
	jvmStderr := func() string { jvmErrMu.Lock(); defer jvmErrMu.Unlock(); return jvmErr.String() }
	waited := make(chan error, 1)
	lines := make(chan jvmSecond, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var s jvmSecond
			if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
				fmt.Fprintf(stderr, "soak: JVM printed %q\n", sc.Text())
				continue
			}
			lines <- s
		}
		close(lines)
		waited <- cmd.Wait()
	}()
	defer func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
		}
	}()
	jvmPid := cmd.Process.Pid
	// The JVM says when every ring is open and its loop runs (its start-up is not soaked).
	select {
	case s, ok := <-lines:
		if !ok || !s.Ready {
			return nil, fmt.Errorf("JVM did not start reading: %v\n%s", <-waited, jvmStderr())
		}
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(2 * time.Minute):
		return nil, fmt.Errorf("JVM not reading after 2 minutes\n%s", jvmStderr())
	}

	// Commits: each batch exactly once.
	pctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	commitsDone := make(chan struct{})
	var commitWG sync.WaitGroup
	commitWG.Add(1)
	go func() {
		defer commitWG.Done()
		idle := ringbuf.DefaultIdle()
		for {
			rec, ok, err := cr.Poll()
			if err != nil {
				cancel(fmt.Errorf("bad commit record: %w", err))
				return
			}
			if !ok {
				select {
				case <-commitsDone:
					return
				default:
				}
				idle.Idle(0)
				continue
			}
			idle.Reset()
			if int(rec.Partition) >= len(parts) || rec.Type != ringbuf.CommitTypeCommit {
				parts[0].mu.Lock()
				parts[0].bad++
				parts[0].mu.Unlock()
				continue
			}
			pt := parts[rec.Partition]
			pt.mu.Lock()
			for id := rec.FirstBatchID; id <= rec.LastBatchID; id++ {
				if _, ok := pt.pending[id]; ok {
					delete(pt.pending, id)
				} else {
					// Committed before its producer recorded it (the JVM can be that
					// quick), committed twice, or unknown: settled when it is recorded.
					pt.early[id]++
				}
			}
			pt.mu.Unlock()
		}
	}()

	// Producers.
	var stopProf func()
	if cfg.CPUProfile != "" {
		f, err := os.Create(cfg.CPUProfile)
		if err != nil {
			return nil, err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, err
		}
		stopProf = func() { pprof.StopCPUProfile(); f.Close() }
	}
	start := time.Now()
	end := start.Add(cfg.Duration)
	cpu0 := cpuTime()
	var prodWG sync.WaitGroup
	for p, pt := range parts {
		prodWG.Add(1)
		go func() {
			defer prodWG.Done()
			if err := produce(pctx, cfg, p, pt, end); err != nil && pctx.Err() == nil {
				cancel(fmt.Errorf("producer %d: %w", p, err))
			}
		}()
	}
	prodDone := make(chan struct{})
	go func() { prodWG.Wait(); close(prodDone) }()

	// Per-second records, driven by the JVM's lines.
	rep := &Report{Config: cfg.report()}
	bar := newProgress(cfg, stderr)
	var final *jvmSecond
	var lastProduced int64
	var goCPU time.Duration
	prodFinished := false
loop:
	for {
		select {
		case s, ok := <-lines:
			if !ok {
				break loop
			}
			if s.Final {
				final = &s
				continue
			}
			var produced int64
			fill := 0.0
			for _, pt := range parts {
				produced += pt.produced.Load()
				fill = max(fill, float64(pt.ring.Tail()-pt.ring.Head())/float64(pt.ring.Capacity()))
			}
			sec := Second{T: s.T, Msgs: s.Msgs, Bytes: s.Bytes, ProducedBytes: produced - lastProduced,
				P50LatencyUs: s.P50LatencyUs, P99LatencyUs: s.P99LatencyUs, P999LatencyUs: s.P999LatencyUs, MaxLatencyUs: s.MaxLatencyUs,
				JVMGCCount: s.GCCount, JVMGCTimeMs: s.GCTimeMs, JVMAllocBytes: s.AllocBytes, JVMCPUNs: s.CPUNs,
				JVMHeapUsedBytes: s.HeapUsedBytes, JVMRSSBytes: rss(jvmPid), GoRSSBytes: rss(0), RingFill: fill, RingSetBytes: dirBlocks(dir), ShmUsedBytes: shmUsed(),
				ChecksumFailures: s.ChecksumFailures, Lost: s.Lost, Duplicates: s.Duplicates}
			if sec.JVMRSSBytes < 0 {
				sec.JVMRSSBytes = s.RSSBytes
			}
			lastProduced = produced
			rep.Seconds = append(rep.Seconds, sec)
			bar.update(sec, time.Since(start))
		case <-prodDone:
			prodDone = nil
			prodFinished = true
			goCPU = cpuTime() - cpu0
			if stopProf != nil {
				stopProf()
			}
		case <-pctx.Done():
			bar.done()
			cmd.Process.Kill()
			return nil, context.Cause(pctx)
		}
	}
	bar.done()
	if !prodFinished {
		<-prodDone
		goCPU = cpuTime() - cpu0
	}
	if err := <-waited; err != nil && final == nil {
		return nil, fmt.Errorf("JVM: %v\n%s", err, jvmStderr())
	}
	if final == nil {
		return nil, fmt.Errorf("JVM ended without a final line\n%s", jvmStderr())
	}
	// Everything the JVM committed is in the commit ring by now.
	time.Sleep(50 * time.Millisecond)
	close(commitsDone)
	commitWG.Wait()
	if err := context.Cause(pctx); err != nil {
		return nil, err
	}
	summarize(cfg, rep, final, parts, goCPU)
	for _, pt := range parts {
		pt.ring.Unlink()
	}
	commitRing.Unlink()
	if err := writeReport(cfg, rep); err != nil {
		return rep, err
	}
	return rep, nil
}

// produce writes synthetic messages into pt's ring at cfg.Rate/partitions until end.
func produce(ctx context.Context, cfg config, p int, pt *part, end time.Time) error {
	w, err := ringbuf.NewWriter(pt.ring)
	if err != nil {
		return err
	}
	defer w.Close()
	bt, err := arrowbatch.NewBatcher(w, cfg.Policy, ringbuf.Yield{})
	if err != nil {
		return err
	}
	src, err := synth.New(synth.Config{Seed: cfg.Seed + int64(p), Size: cfg.Size, Rate: cfg.Rate / float64(cfg.Partitions)})
	if err != nil {
		return err
	}
	record := func(f arrowbatch.Flushed) {
		if f.Rows == 0 {
			return
		}
		src.Recycle()
		pt.mu.Lock()
		if n := pt.early[f.BatchID]; n > 0 {
			delete(pt.early, f.BatchID)
			pt.bad += int64(n - 1) // committed more than once
		} else {
			pt.pending[f.BatchID] = int32(f.Rows)
		}
		pt.batches++
		pt.mu.Unlock()
		pt.msgs.Store(src.Count() - int64(bt.Pending()))
	}
	var m arrowbatch.Message
	lastBeat := time.Now()
	for n := 0; ; n++ {
		if n&255 == 0 {
			now := time.Now()
			if now.After(end) || ctx.Err() != nil {
				break
			}
			if now.Sub(lastBeat) > 200*time.Millisecond {
				w.Heartbeat()
				lastBeat = now
			}
			if bt.Due(now) {
				f, err := bt.Flush(ctx)
				if err != nil {
					return err
				}
				record(f)
			}
		}
		src.Next(&m)
		f, err := bt.Add(ctx, m)
		if err != nil {
			return err
		}
		record(f)
		pt.produced.Add(int64(len(m.Data)))
		src.Pace()
		if bt.Pending() > 0 && bt.Due(time.Now()) {
			// Paced: the source may have slept past the linger time.
			f, err := bt.Flush(ctx)
			if err != nil {
				return err
			}
			record(f)
		}
	}
	f, err := bt.Flush(ctx)
	if err != nil {
		return err
	}
	record(f)
	pt.msgs.Store(src.Count())
	return nil
}

// summarize fills rep's summary and verdict.
func summarize(cfg config, rep *Report, final *jvmSecond, parts []*part, goCPU time.Duration) {
	s := &rep.Summary
	s.Seconds = len(rep.Seconds)
	s.Msgs, s.Bytes = final.MsgsTotal, final.BytesTotal
	s.P50LatencyUs, s.P99LatencyUs, s.P999LatencyUs = final.P50LatencyUs, final.P99LatencyUs, final.P999LatencyUs
	s.JVMGCCount, s.JVMGCTimeMs = final.GCCount, final.GCTimeMs
	s.JVMAllocPerMsg = float64(final.AllocBytes) / float64(max(final.MsgsTotal, 1))
	s.JVMCPUSPerGB = float64(final.CPUNs) / 1e9 / (float64(max(final.BytesTotal, 1)) / 1e9)
	s.GoCPUSPerGB = goCPU.Seconds() / (float64(max(final.BytesTotal, 1)) / 1e9)
	s.ChecksumFailures, s.Lost, s.Duplicates, s.BadIDs = final.ChecksumFailures, final.Lost, final.Duplicates, final.BadIDs

	// Messages the JVM never saw at the end of each stream are lost too.
	var produced int64
	for i, pt := range parts {
		n := pt.msgs.Load()
		produced += n
		if i < len(final.NextIDs) && final.NextIDs[i] < n {
			s.Lost += n - final.NextIDs[i]
		}
		pt.mu.Lock()
		s.CommitErrors += pt.bad + int64(len(pt.pending))
		for _, n := range pt.early {
			s.CommitErrors += int64(n) // never written, or written and committed twice
		}
		pt.mu.Unlock()
	}
	if len(final.NextIDs) != len(parts) {
		s.CommitErrors++ // the JVM did not report every partition: count the loss in total
		s.Lost += max(0, produced-final.MsgsTotal)
	}
	s.Intact = s.ChecksumFailures == 0 && s.Lost == 0 && s.Duplicates == 0 && s.BadIDs == 0 && s.CommitErrors == 0

	// The measured seconds: after the warm-up, and only full seconds of production.
	var meas []Second
	for _, sec := range rep.Seconds {
		if sec.T > cfg.Warmup.Seconds() && sec.T <= cfg.Duration.Seconds() {
			meas = append(meas, sec)
		}
	}
	if len(meas) > 0 {
		var sum float64
		for _, sec := range meas {
			sum += float64(sec.Bytes)
			s.MaxP99LatencyUs = max(s.MaxP99LatencyUs, sec.P99LatencyUs)
		}
		s.MeanBytesPerS = sum / float64(len(meas))
		s.MinWindowBytesPS = s.MeanBytesPerS
		for i := 0; i+5 <= len(meas); i++ {
			var w float64
			for _, sec := range meas[i : i+5] {
				w += float64(sec.Bytes)
			}
			s.MinWindowBytesPS = min(s.MinWindowBytesPS, w/5)
		}
	}
	s.RateSustained = len(meas) > 0 && s.MeanBytesPerS >= (1-cfg.Tolerance)*cfg.Rate && s.MinWindowBytesPS >= (1-2*cfg.Tolerance)*cfg.Rate

	// Memory: the second half's peak against the first half's.
	growth := func(get func(Second) int64) int64 {
		if len(meas) < 4 {
			return 0
		}
		half := len(meas) / 2
		var a, b int64
		for _, sec := range meas[:half] {
			a = max(a, get(sec))
		}
		for _, sec := range meas[half:] {
			b = max(b, get(sec))
		}
		return b - a
	}
	bound := func(g int64, get func(Second) int64) bool {
		var first int64
		if len(meas) > 0 {
			first = get(meas[0])
		}
		return g <= 64<<20+first/10
	}
	goRSS := func(x Second) int64 { return x.GoRSSBytes }
	jvmRSS := func(x Second) int64 { return x.JVMRSSBytes }
	shm := func(x Second) int64 { return x.RingSetBytes }
	s.GoRSSGrowth, s.JVMRSSGrowth, s.ShmGrowth = growth(goRSS), growth(jvmRSS), growth(shm)
	s.MemoryBounded = bound(s.GoRSSGrowth, goRSS) && bound(s.JVMRSSGrowth, jvmRSS) && bound(s.ShmGrowth, shm)
	s.LatencyGoalMet = s.P99LatencyUs > 0 && s.P99LatencyUs < 1000

	rep.Pass = s.RateSustained && s.Intact && s.MemoryBounded
	var why []string
	if !s.RateSustained {
		why = append(why, fmt.Sprintf("rate not sustained (mean %s/s, worst 5 s %s/s, target %s/s -%.0f%%)", human(s.MeanBytesPerS), human(s.MinWindowBytesPS), human(cfg.Rate), cfg.Tolerance*100))
	}
	if !s.Intact {
		why = append(why, fmt.Sprintf("data not intact (%d lost, %d repeated, %d corrupt, %d bad ids, %d commit errors)", s.Lost, s.Duplicates, s.ChecksumFailures, s.BadIDs, s.CommitErrors))
	}
	if !s.MemoryBounded {
		why = append(why, fmt.Sprintf("memory grew (Go RSS %+d MiB, JVM RSS %+d MiB, ring files in /dev/shm %+d MiB)", s.GoRSSGrowth>>20, s.JVMRSSGrowth>>20, s.ShmGrowth>>20))
	}
	latency := "met"
	if !s.LatencyGoalMet {
		latency = "missed"
	}
	detail := fmt.Sprintf("%d s, %d x %d B at %s/s mean (target %s/s), %d msgs: %d lost, %d corrupt; p50/p99/p99.9 %s/%s/%s (p99 < 1 ms goal %s); JVM %.2f B/msg, %d GCs; RSS growth Go %+d MiB, JVM %+d MiB, /dev/shm %+d MiB",
		s.Seconds, cfg.Partitions, cfg.Size, human(s.MeanBytesPerS), human(cfg.Rate), s.Msgs, s.Lost, s.ChecksumFailures,
		us(s.P50LatencyUs), us(s.P99LatencyUs), us(s.P999LatencyUs), latency, s.JVMAllocPerMsg, s.JVMGCCount,
		s.GoRSSGrowth>>20, s.JVMRSSGrowth>>20, s.ShmGrowth>>20)
	if rep.Pass {
		rep.Verdict = "soak PASS: " + detail
	} else {
		rep.Verdict = "soak FAIL: " + strings.Join(why, "; ") + " -- " + detail
	}
}

func drawSoak(path string, cfg config, rep *Report) error {
	secs := make([]plot.Second, 0, len(rep.Seconds))
	for _, s := range rep.Seconds {
		secs = append(secs, plot.Second{T: s.T, BytesPerS: float64(s.Bytes), TargetBps: cfg.Rate, P50: s.P50LatencyUs, P99: s.P99LatencyUs,
			P999: s.P999LatencyUs, RSSGoMiB: float64(s.GoRSSBytes) / (1 << 20), RSSJVMMiB: float64(s.JVMRSSBytes) / (1 << 20),
			RingFill: s.RingFill, RingSetMiB: float64(s.RingSetBytes) / (1 << 20), ShmUsedMiB: float64(s.ShmUsedBytes) / (1 << 20)})
	}
	return plot.Soak(path, fmt.Sprintf("make soak: %d B messages, target %s/s", cfg.Size, human(cfg.Rate)), secs)
}

// rss returns the resident set size of pid (0: this process), -1 if unknown.
func rss(pid int) int64 {
	p := "/proc/self/status"
	if pid > 0 {
		p = fmt.Sprintf("/proc/%d/status", pid)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return -1
			}
			return kb << 10
		}
	}
	return -1
}

// dirBlocks returns the bytes of storage held by the files in dir (st_blocks), -1 if
// unknown.
func dirBlocks(dir string) int64 {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return -1
	}
	var n int64
	for _, e := range ents {
		var st unix.Stat_t
		if err := unix.Stat(filepath.Join(dir, e.Name()), &st); err == nil {
			n += st.Blocks * 512
		}
	}
	return n
}

// shmUsed returns the bytes in use on /dev/shm, by every user of it.
func shmUsed() int64 {
	var st unix.Statfs_t
	if err := unix.Statfs("/dev/shm", &st); err != nil {
		return -1
	}
	return int64(st.Blocks-st.Bfree) * st.Bsize
}

func cpuTime() time.Duration {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

func human(b float64) string {
	switch {
	case b >= 1e9:
		return fmt.Sprintf("%.2f GB", b/1e9)
	case b >= 1e6:
		return fmt.Sprintf("%.1f MB", b/1e6)
	case b >= 1e3:
		return fmt.Sprintf("%.1f kB", b/1e3)
	}
	return fmt.Sprintf("%.0f B", b)
}

func us(v float64) string {
	if v >= 1000 {
		return fmt.Sprintf("%.2f ms", v/1000)
	}
	return fmt.Sprintf("%.0f µs", v)
}
