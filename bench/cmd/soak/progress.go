package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// progress shows the soak running on stderr: a bar redrawn every second on a terminal,
// or a line every 10 seconds otherwise.
type progress struct {
	w     io.Writer
	mode  string
	total time.Duration
	last  time.Time
}

func newProgress(cfg config, w io.Writer) *progress {
	mode := cfg.Progress
	if mode == "auto" {
		mode = "lines"
		if f, ok := w.(*os.File); ok {
			if _, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err == nil {
				mode = "bar"
			}
		}
	}
	return &progress{w: w, mode: mode, total: cfg.Duration}
}

func (p *progress) update(s Second, elapsed time.Duration) {
	status := fmt.Sprintf("%4.0f/%.0f s  %9s/s  p99 %8s  ring %3.0f%%  JVM RSS %4d MiB  lost %d  corrupt %d",
		s.T, p.total.Seconds(), human(float64(s.Bytes)), us(s.P99LatencyUs), s.RingFill*100, s.JVMRSSBytes>>20, s.Lost, s.ChecksumFailures)
	switch p.mode {
	case "bar":
		const width = 30
		n := int(float64(width) * min(1, elapsed.Seconds()/p.total.Seconds()))
		fmt.Fprintf(p.w, "\r[%s%s] %s", strings.Repeat("#", n), strings.Repeat(".", width-n), status)
	case "lines":
		if p.last.IsZero() || time.Since(p.last) >= 10*time.Second {
			fmt.Fprintln(p.w, "soak:", status)
			p.last = time.Now()
		}
	}
}

func (p *progress) done() {
	if p.mode == "bar" {
		fmt.Fprintln(p.w)
	}
}
