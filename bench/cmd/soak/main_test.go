package main

import (
	"strings"
	"testing"
	"time"
)

func TestParseRate(t *testing.T) {
	for in, want := range map[string]float64{"1GB/s": 1e9, "500 MB/s": 5e8, "2MiB/s": 2 << 20, "1e8": 1e8, "64KiB": 64 << 10, "3kB/s": 3000} {
		got, err := parseRate(in)
		if err != nil || got != want {
			t.Errorf("parseRate(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "fast", "-1GB/s", "0"} {
		if _, err := parseRate(in); err == nil {
			t.Errorf("parseRate(%q) accepted", in)
		}
	}
}

func makeSeconds(n int, bytes func(i int) int64, rss func(i int) int64) []Second {
	var s []Second
	for i := 0; i < n; i++ {
		s = append(s, Second{T: float64(i + 1), Bytes: bytes(i), GoRSSBytes: 50 << 20, JVMRSSBytes: rss(i), RingSetBytes: 64 << 20, ShmUsedBytes: 64 << 20, P99LatencyUs: 500})
	}
	return s
}

func TestSummarizeVerdicts(t *testing.T) {
	cfg := config{Duration: 20 * time.Second, Warmup: 2 * time.Second, Size: 1024, Rate: 1e9, Tolerance: 0.05, Partitions: 1}
	flat := func(int) int64 { return 300 << 20 }
	final := &jvmSecond{Final: true, MsgsTotal: 1000, BytesTotal: 1024000, P99LatencyUs: 500, NextIDs: []int64{1000}}
	parts := []*part{{pending: map[int64]int32{}, early: map[int64]int{}}}
	parts[0].msgs.Store(1000)

	rep := &Report{Seconds: makeSeconds(20, func(int) int64 { return 1e9 }, flat)}
	summarize(cfg, rep, final, parts, time.Second)
	if !rep.Pass || !strings.HasPrefix(rep.Verdict, "soak PASS") || !rep.Summary.LatencyGoalMet {
		t.Fatalf("steady run: %s %+v", rep.Verdict, rep.Summary)
	}

	// A 5-second dip to 80% fails even though the mean stays within 5%... or not: the
	// mean is 95% exactly here, the window rule catches the dip.
	rep = &Report{Seconds: makeSeconds(20, func(i int) int64 {
		if i >= 8 && i < 13 {
			return 8e8
		}
		return 1e9
	}, flat)}
	summarize(cfg, rep, final, parts, time.Second)
	if rep.Pass || rep.Summary.RateSustained || !strings.Contains(rep.Verdict, "rate not sustained") {
		t.Fatalf("dip: %s", rep.Verdict)
	}

	// JVM RSS climbing 20 MiB a second grows without bound.
	rep = &Report{Seconds: makeSeconds(20, func(int) int64 { return 1e9 }, func(i int) int64 { return int64(300+20*i) << 20 })}
	summarize(cfg, rep, final, parts, time.Second)
	if rep.Pass || rep.Summary.MemoryBounded || !strings.Contains(rep.Verdict, "memory grew") {
		t.Fatalf("growth: %s", rep.Verdict)
	}

	// Messages the JVM never saw at the end of a stream are lost.
	parts[0].msgs.Store(1010)
	rep = &Report{Seconds: makeSeconds(20, func(int) int64 { return 1e9 }, flat)}
	summarize(cfg, rep, final, parts, time.Second)
	if rep.Pass || rep.Summary.Lost != 10 {
		t.Fatalf("tail loss: %s", rep.Verdict)
	}
	parts[0].msgs.Store(1000)

	// A batch written but never committed back is a commit error.
	parts[0].pending[7] = 100
	rep = &Report{Seconds: makeSeconds(20, func(int) int64 { return 1e9 }, flat)}
	summarize(cfg, rep, final, parts, time.Second)
	if rep.Pass || rep.Summary.CommitErrors != 1 {
		t.Fatalf("uncommitted batch: %s", rep.Verdict)
	}
}

func TestDurationFlagTakesPlainSeconds(t *testing.T) {
	for _, tc := range []struct {
		arg  string
		want time.Duration
	}{{"600", 600 * time.Second}, {"90s", 90 * time.Second}, {"10m", 10 * time.Minute}, {"2.5", 2500 * time.Millisecond}} {
		cfg, err := parseFlags([]string{"-duration", tc.arg, "-warmup", "1s"})
		if err != nil || cfg.Duration != tc.want {
			t.Errorf("-duration %s: %v, %v; want %v", tc.arg, cfg.Duration, err, tc.want)
		}
	}
	if _, err := parseFlags([]string{"-duration", "soon"}); err == nil {
		t.Error("-duration soon accepted")
	}
}
