package peers

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/apache/arrow-go/v18/arrow/flight"
	"github.com/apache/arrow-go/v18/arrow/ipc"

	"github.com/pubsub-shm/pubsub-shm/bench/jvm"
	"github.com/pubsub-shm/pubsub-shm/bench/synth"
	"github.com/pubsub-shm/pubsub-shm/ringbuf/arrowbatch"
)

// flightTicket is the one ticket the bench server serves.
const flightTicket = "bench"

// doGetServer streams record batches from a recordSource for a fixed time on DoGet.
type doGetServer struct {
	flight.BaseFlightServer
	rs       *recordSource
	duration time.Duration
	once     sync.Once
	cpu      time.Duration // Go CPU time spent serving (process-wide, while DoGet ran)
	err      error
	done     chan struct{}
}

// DoGet serves the bench ticket once.
func (s *doGetServer) DoGet(t *flight.Ticket, stream flight.FlightService_DoGetServer) error {
	if string(t.GetTicket()) != flightTicket {
		return fmt.Errorf("unknown ticket %q", t.GetTicket())
	}
	served := false
	s.once.Do(func() {
		served = true
		defer close(s.done)
		cpu0 := cpuTime()
		w := flight.NewRecordWriter(stream, ipc.WithSchema(arrowbatch.Schema))
		end := time.Now().Add(s.duration)
		for time.Now().Before(end) && stream.Context().Err() == nil {
			rec := s.rs.next()
			err := w.Write(rec)
			rec.Release()
			if err != nil {
				s.err = err
				break
			}
		}
		if err := w.Close(); err != nil && s.err == nil {
			s.err = err
		}
		s.cpu = cpuTime() - cpu0
	})
	if !served {
		return errors.New("the bench ticket is served once")
	}
	return s.err
}

// Flight measures Arrow Flight DoGet on loopback TCP: a Go arrow-go Flight server
// builds record batches with arrow-go's builders (recordSource) and streams them on DoGet;
// a JVM running Arrow Java's flight-core client (dev.pubsubshm.bench.flight.FlightBenchConsumer,
// bench/java/flight) reads them and verifies every payload byte.
func Flight(ctx context.Context, o Options, size int) (res Result, err error) {
	src, err := synth.New(synth.Config{Seed: o.Seed, Size: size})
	if err != nil {
		return res, err
	}
	rs := newRecordSource(src, size, o.Policy)
	defer rs.release()
	svc := &doGetServer{rs: rs, duration: o.Duration, done: make(chan struct{})}
	srv := flight.NewServerWithMiddleware(nil)
	if err := srv.Init("127.0.0.1:0"); err != nil {
		return res, err
	}
	srv.RegisterFlightService(svc)
	go srv.Serve()
	defer srv.Shutdown()
	port := srv.Addr().(*net.TCPAddr).Port

	cp, err := jvm.ModuleClasspath("flight")
	if err != nil {
		return res, err
	}
	cmd := jvm.CommandWithClasspath(cp, o.jfrOpts("flight", size), "dev.pubsubshm.bench.flight.FlightBenchConsumer",
		"--host", "127.0.0.1", "--port", strconv.Itoa(port), "--ticket", flightTicket)
	p, err := start("JVM Flight client", cmd, false)
	if err != nil {
		return res, err
	}
	defer p.kill()
	stopProf, err := o.profile("flight", size)
	if err != nil {
		return res, err
	}
	select {
	case <-svc.done:
	case <-p.done:
		stopProf()
		return res, fmt.Errorf("JVM Flight client exited before the stream ended: %v\n%s", p.err, p.stderr.String())
	case <-ctx.Done():
		stopProf()
		return res, ctx.Err()
	case <-time.After(o.Duration + 2*time.Minute):
		stopProf()
		return res, fmt.Errorf("DoGet not served within %v\n%s", o.Duration+2*time.Minute, p.stderr.String())
	}
	stopProf()
	if svc.err != nil {
		return res, fmt.Errorf("DoGet: %w (JVM: %s)", svc.err, p.stderr.String())
	}
	if err := p.wait(ctx, 2*time.Minute); err != nil {
		return res, err
	}
	return finishStream("flight", p, src, size, svc.cpu)
}
