package peers

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/apache/arrow-go/v18/arrow/ipc"

	"github.com/pubsub-shm/pubsub-shm/bench/jvm"
	"github.com/pubsub-shm/pubsub-shm/bench/synth"
	"github.com/pubsub-shm/pubsub-shm/ringbuf/arrowbatch"
)

// Uds measures an Arrow IPC stream over a Unix domain socket, the usual way to hand Arrow
// data to another local process: Go builds record batches with arrow-go's builders
// (recordSource) and writes them with ipc.Writer; a JVM
// (dev.pubsubshm.bench.UdsBenchConsumer) reads them with Arrow Java's ArrowStreamReader
// and verifies every payload byte.
func Uds(ctx context.Context, o Options, size int) (res Result, err error) {
	dir, err := os.MkdirTemp("", "bench-uds-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "arrow.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return res, err
	}
	defer ln.Close()
	cmd, err := jvm.Command(o.jfrOpts("uds", size), "dev.pubsubshm.bench.UdsBenchConsumer", "--socket", sock)
	if err != nil {
		return res, err
	}
	p, err := start("JVM consumer", cmd, false)
	if err != nil {
		return res, err
	}
	defer p.kill()
	conn, err := accept(ctx, ln.(*net.UnixListener), p)
	if err != nil {
		return res, err
	}
	defer conn.Close()
	src, err := synth.New(synth.Config{Seed: o.Seed, Size: size})
	if err != nil {
		return res, err
	}
	rs := newRecordSource(src, size, o.Policy)
	defer rs.release()
	stopProf, err := o.profile("uds", size)
	if err != nil {
		return res, err
	}
	cpu0 := cpuTime()
	bw := bufio.NewWriterSize(conn, 256<<10)
	w := ipc.NewWriter(bw, ipc.WithSchema(arrowbatch.Schema))
	end := time.Now().Add(o.Duration)
	for time.Now().Before(end) && ctx.Err() == nil {
		rec := rs.next()
		err := w.Write(rec)
		rec.Release()
		if err != nil {
			stopProf()
			return res, fmt.Errorf("write to JVM: %w (JVM: %s)", err, p.stderr.String())
		}
	}
	if err := w.Close(); err != nil {
		stopProf()
		return res, err
	}
	if err := bw.Flush(); err != nil {
		stopProf()
		return res, err
	}
	conn.(*net.UnixConn).CloseWrite()
	goCPU := cpuTime() - cpu0
	stopProf()
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	if err := p.wait(ctx, 2*time.Minute); err != nil {
		return res, err
	}
	return finishStream("uds", p, src, size, goCPU)
}

// accept waits for the consumer JVM to connect, or to fail.
func accept(ctx context.Context, ln interface {
	Accept() (net.Conn, error)
	SetDeadline(time.Time) error
}, p *proc) (net.Conn, error) {
	deadline := time.Now().Add(time.Minute)
	for {
		ln.SetDeadline(time.Now().Add(100 * time.Millisecond))
		c, err := ln.Accept()
		if err == nil {
			return c, nil
		}
		if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
			return nil, err
		}
		switch {
		case p.exited():
			return nil, fmt.Errorf("JVM consumer exited before connecting: %v\n%s", p.err, p.stderr.String())
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case time.Now().After(deadline):
			return nil, fmt.Errorf("JVM consumer did not connect within a minute\n%s", p.stderr.String())
		}
	}
}

// finishStream checks what a stream consumer read against what the source wrote and
// returns the result.
func finishStream(name string, p *proc, src *synth.Source, size int, goCPU time.Duration) (Result, error) {
	var res Result
	j, err := p.jvmResult()
	if err != nil {
		return res, err
	}
	if j.Msgs != src.Count() || j.Bytes != src.Bytes() {
		return res, fmt.Errorf("JVM consumer read %d msgs / %d bytes, Go wrote %d / %d", j.Msgs, j.Bytes, src.Count(), src.Bytes())
	}
	if j.ChecksumFailures != 0 {
		return res, fmt.Errorf("%d payloads failed their checksum", j.ChecksumFailures)
	}
	res = Result{Name: name, MsgSize: size}
	res.fill(j)
	res.GoCPUSPerGB = ptr(goCPU.Seconds() / (float64(j.Bytes) / 1e9))
	return res, nil
}
