package peers

import (
	"testing"

	"github.com/pubsub-shm/pubsub-shm/bench/synth"
	"github.com/pubsub-shm/pubsub-shm/ringbuf/arrowbatch"
)

func TestRecordSourceBatches(t *testing.T) {
	src, err := synth.New(synth.Config{Seed: 7, Size: 1000})
	if err != nil {
		t.Fatal(err)
	}
	rs := newRecordSource(src, 1000, arrowbatch.Policy{MaxRows: 100, MaxBytes: 50_000, Linger: 1})
	defer rs.release()
	var rows int64
	for range 3 {
		rec := rs.next()
		if !rec.Schema().Equal(arrowbatch.Schema) {
			t.Fatalf("schema %v", rec.Schema())
		}
		if rec.NumRows() == 0 || rec.NumRows() > 100 {
			t.Fatalf("%d rows", rec.NumRows())
		}
		rows += rec.NumRows()
		rec.Release()
	}
	if rows != src.Count() {
		t.Fatalf("batches hold %d rows, source produced %d", rows, src.Count())
	}
}

func TestFillRatesFromMeasuredWindow(t *testing.T) {
	var r Result
	r.fill(JVMResult{Msgs: 300, Bytes: 3000, MeasuredMsgs: 200, MeasuredBytes: 2000, ElapsedNs: 2e9, AllocBytesAllThreads: 100, CPUNs: 1e9, P99LatencyUs: 5})
	if r.MsgsPerS != 100 || r.BytesPerS != 1000 || *r.JVMAllocBytesPerMsg != 0.5 || *r.P99LatencyUs != 5 {
		t.Fatalf("%+v", r)
	}
	if got := *r.JVMCPUSPerGB; got != 1/(2000/1e9) {
		t.Fatalf("cpu s/GB %v", got)
	}
}
