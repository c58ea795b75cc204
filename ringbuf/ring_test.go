package ringbuf

import (
	"context"
	"encoding/binary"
	"errors"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestCreateOpenValidates(t *testing.T) {
	dir := shmDir(t)
	path := filepath.Join(dir, "data-7.ring")
	schema := []byte("schema-bytes")
	r, err := Create(path, CreateOptions{Kind: KindData, Capacity: 1 << 16, Partition: 7, Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer r.Unlink()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("ring file mode %v, want 0600", st.Mode().Perm())
	}
	if st.Size() != DefaultHeaderLength+1<<16 {
		t.Errorf("file size %d", st.Size())
	}
	o, err := Open(path, OpenOptions{Kind: KindData})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if o.InstanceID() != r.InstanceID() || o.InstanceID() == 0 || o.Partition() != 7 || o.Capacity() != 1<<16 || string(o.Schema()) != "schema-bytes" || o.MaxRecordLength() != 1<<15 {
		t.Errorf("opened ring differs: id %x/%x part %d cap %d schema %q", o.InstanceID(), r.InstanceID(), o.Partition(), o.Capacity(), o.Schema())
	}
	if _, err := Open(path, OpenOptions{Kind: KindCommit}); !errors.Is(err, ErrBadHeader) || !strings.Contains(err.Error(), "ring_kind") {
		t.Errorf("open as COMMIT: %v", err)
	}
	if _, err := Create(path, CreateOptions{Kind: KindData, Capacity: 1 << 16}); !errors.Is(err, ErrExists) {
		t.Errorf("create over existing ring: %v", err)
	}
	r2, err := Create(path, CreateOptions{Kind: KindData, Capacity: 1 << 16, Replace: true})
	if err != nil {
		t.Fatalf("replace: %v", err)
	}
	defer r2.Close()
	if r2.InstanceID() == r.InstanceID() {
		t.Error("recreated ring kept its instance id")
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".*tmp*"))
	if len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestCreateRejectsBadOptions(t *testing.T) {
	dir := shmDir(t)
	for _, c := range []CreateOptions{
		{Kind: KindData, Capacity: 4095},
		{Kind: KindData, Capacity: 6000},
		{Kind: KindData, Capacity: 2048},
		{Kind: KindData, Capacity: 1 << 31},
		{Kind: 9, Capacity: 4096},
		{Kind: KindData, Capacity: 4096, Partition: -1},
	} {
		if r, err := Create(filepath.Join(dir, "x.ring"), c); err == nil {
			r.Close()
			t.Errorf("Create(%+v) succeeded", c)
		}
	}
	// Insecure directory.
	open := filepath.Join(dir, "open")
	if err := os.Mkdir(open, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(open, 0o755)
	if _, err := Create(filepath.Join(open, "data-0.ring"), CreateOptions{Kind: KindData, Capacity: 4096}); !errors.Is(err, ErrPermission) {
		t.Errorf("create in 0755 directory: %v", err)
	}
	if err := EnsureDir(open); !errors.Is(err, ErrPermission) {
		t.Errorf("EnsureDir on 0755 directory: %v", err)
	}
}

func TestCreateNoSpace(t *testing.T) {
	// A private 64 KiB tmpfs stands in for a full /dev/shm (tests run as root, as CI does).
	dir := shmDir(t)
	small := filepath.Join(dir, "small")
	os.Mkdir(small, 0o700)
	if err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", small).Run(); err != nil {
		t.Fatalf("mount a 64 KiB tmpfs (tests run as root in CI): %v", err)
	}
	defer exec.Command("umount", small).Run()
	_, err := Create(filepath.Join(small, "data-0.ring"), CreateOptions{Kind: KindData, Capacity: 1 << 20})
	if !errors.Is(err, ErrNoSpace) || !strings.Contains(err.Error(), "bytes free") {
		t.Fatalf("create 1 MiB ring on a 64 KiB tmpfs: %v", err)
	}
	if ents, _ := os.ReadDir(small); len(ents) != 0 {
		t.Errorf("files left after ENOSPC: %v", ents)
	}
}

// corrupt writes a copy of a valid ring with one change and returns Open's error.
func corruptOpen(t *testing.T, mutate func(b []byte) []byte) error {
	t.Helper()
	dir := shmDir(t)
	path := filepath.Join(dir, "data-0.ring")
	r, err := Create(path, CreateOptions{Kind: KindData, Capacity: 4096})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b = mutate(b)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	o, err := Open(path, OpenOptions{})
	if err == nil {
		o.Close()
	}
	return err
}

func TestOpenBadInput(t *testing.T) {
	le := binary.LittleEndian
	cases := []struct {
		name     string
		mutate   func(b []byte) []byte
		sentinel error
		field    string
	}{
		{"wrong magic", func(b []byte) []byte { copy(b, "NOTARING"); return b }, ErrBadMagic, "magic"},
		{"unknown major", func(b []byte) []byte { le.PutUint32(b[VersionOffset:], 2<<16); return b }, ErrVersion, "layout_version=2.0"},
		{"higher minor accepted", nil, nil, ""},
		{"version zero", func(b []byte) []byte { le.PutUint32(b[VersionOffset:], 0); return b }, ErrNotReady, "layout_version"},
		{"truncated", func(b []byte) []byte { return b[:len(b)-100] }, ErrTruncated, "file_length"},
		{"tiny file", func(b []byte) []byte { return b[:100] }, ErrTruncated, "file_size"},
		{"capacity not power of two", func(b []byte) []byte { le.PutUint64(b[CapacityOffset:], 4095); return b }, ErrBadHeader, "capacity=4095"},
		{"bad kind", func(b []byte) []byte { le.PutUint32(b[KindOffset:], 7); return b }, ErrBadHeader, "ring_kind=7"},
		{"bad alignment", func(b []byte) []byte { le.PutUint32(b[AlignmentOffset:], 8); return b }, ErrBadHeader, "record_alignment=8"},
		{"bad header_length", func(b []byte) []byte { le.PutUint32(b[HeaderLengthOffset:], 100); return b }, ErrBadHeader, "header_length=100"},
		{"zero instance", func(b []byte) []byte { le.PutUint64(b[InstanceIDOffset:], 0); return b }, ErrBadHeader, "ring_instance_id"},
		{"negative partition", func(b []byte) []byte { le.PutUint32(b[PartitionOffset:], 0xFFFFFFFF); return b }, ErrBadHeader, "partition=-1"},
		{"bad max record", func(b []byte) []byte { le.PutUint32(b[MaxRecordLengthOffset:], 4096); return b }, ErrBadHeader, "max_record_length=4096"},
		{"schema overflow", func(b []byte) []byte { le.PutUint32(b[SchemaLengthOffset:], 5000); return b }, ErrBadHeader, "schema_length=5000"},
		{"tail before head", func(b []byte) []byte { le.PutUint64(b[HeadOffset:], 128); return b }, ErrBadHeader, "head_position/tail_position"},
		{"tail past capacity", func(b []byte) []byte { le.PutUint64(b[TailOffset:], 8192); return b }, ErrBadHeader, "head_position/tail_position"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.mutate == nil {
				err := corruptOpen(t, func(b []byte) []byte { le.PutUint32(b[VersionOffset:], 1<<16|7); return b })
				if err != nil {
					t.Fatalf("minor version 1.7 refused: %v", err)
				}
				return
			}
			err := corruptOpen(t, c.mutate)
			if !errors.Is(err, c.sentinel) {
				t.Fatalf("got %v, want %v", err, c.sentinel)
			}
			if !strings.Contains(err.Error(), c.field) {
				t.Errorf("error %q does not name %q", err, c.field)
			}
		})
	}
}

func TestOpenRefusesInsecureFile(t *testing.T) {
	r := testRing(t, KindData, 4096)
	if err := os.Chmod(r.Path(), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(r.Path(), OpenOptions{}); !errors.Is(err, ErrPermission) || !strings.Contains(err.Error(), "0644") {
		t.Fatalf("open 0644 ring: %v", err)
	}
	if err := os.Chown(r.Path(), 65534, 65534); err != nil {
		t.Fatalf("chown (tests run as root): %v", err)
	}
	os.Chmod(r.Path(), 0o600)
	if _, err := Open(r.Path(), OpenOptions{}); !errors.Is(err, ErrPermission) || !strings.Contains(err.Error(), "uid 65534") {
		t.Fatalf("open ring of another uid: %v", err)
	}
}

func writeRaw(t testing.TB, w *Writer, n int, seed uint64) (int64, error) {
	c, err := w.TryClaim(TypeRaw, 0, n)
	if err != nil {
		return 0, err
	}
	fillPayload(c.Body(), w.NextBatchID(), seed)
	return c.Commit(1)
}

func TestWrapAroundAndPadding(t *testing.T) {
	r := testRing(t, KindData, 4096)
	w, _ := NewWriter(r)
	rd, _ := NewReader(r)
	rng := rand.New(rand.NewSource(1))
	var want int64 = 1
	paddings := 0
	for i := 0; i < 2000; i++ {
		n := rng.Intn(1500)
		if _, err := writeRaw(t, w, n, 9); err != nil {
			t.Fatalf("write %d (%d bytes): %v", i, n, err)
		}
		posBefore := rd.Position()
		rec, ok, err := rd.Poll()
		if err != nil || !ok {
			t.Fatalf("poll %d: ok=%v err=%v", i, ok, err)
		}
		if rec.Position != posBefore {
			paddings++
			if posBefore&(r.Capacity()-1) == 0 || rec.Position&(r.Capacity()-1) != 0 {
				t.Fatalf("skipped from %d to %d without wrapping", posBefore, rec.Position)
			}
		}
		if rec.Type != TypeRaw || rec.BatchID != want || len(rec.Body) != n || !checkPayload(rec.Body, rec.BatchID) {
			t.Fatalf("record %d: type %d id %d len %d (want id %d len %d) checksum %v", i, rec.Type, rec.BatchID, len(rec.Body), want, n, checkPayload(rec.Body, rec.BatchID))
		}
		if rec.Position%RecordAlignment != 0 || (rec.Position&(r.Capacity()-1))+rec.Aligned > r.Capacity() {
			t.Fatalf("record at %d (aligned %d) crosses the end", rec.Position, rec.Aligned)
		}
		want++
		if err := rd.Release(rec.Position); err != nil {
			t.Fatal(err)
		}
		if r.Head() != rd.Position() {
			t.Fatalf("head %d != read position %d after releasing everything", r.Head(), rd.Position())
		}
	}
	if paddings < 100 {
		t.Errorf("only %d padding records in 2000 wraps of a 4 KiB ring", paddings)
	}
}

func TestBackPressure(t *testing.T) {
	r := testRing(t, KindData, 4096)
	w, _ := NewWriter(r)
	rd, _ := NewReader(r)
	n := 0
	for {
		_, err := writeRaw(t, w, 448, 1) // 512 bytes a record
		if errors.Is(err, ErrFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 8 {
		t.Fatalf("%d records of 512 bytes fit in 4096, want 8", n)
	}
	if r.Used() != 4096 {
		t.Fatalf("used %d", r.Used())
	}
	// Reading is not releasing: still full.
	rec, _, _ := rd.Poll()
	if _, err := writeRaw(t, w, 448, 1); !errors.Is(err, ErrFull) {
		t.Fatalf("write after poll without release: %v", err)
	}
	// Claim waits and gives a clear error when the context ends.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := w.Claim(ctx, TypeRaw, 0, 448, nil); !errors.Is(err, ErrFull) || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "4096 of 4096 bytes held") {
		t.Fatalf("Claim on a full ring: %v", err)
	}
	rd.Release(rec.Position)
	if _, err := writeRaw(t, w, 448, 1); err != nil {
		t.Fatalf("write after release: %v", err)
	}
	if _, err := w.TryClaim(TypeRaw, 0, 4096); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("record larger than max_record_length: %v", err)
	}
}

func TestOutOfOrderRelease(t *testing.T) {
	r := testRing(t, KindData, 1<<16)
	w, _ := NewWriter(r)
	rd, _ := NewReader(r)
	var recs []Record
	for i := 0; i < 5; i++ {
		writeRaw(t, w, 100, 1)
		rec, ok, err := rd.Poll()
		if !ok || err != nil {
			t.Fatal(ok, err)
		}
		recs = append(recs, rec)
	}
	for _, i := range []int{3, 1, 4} {
		if err := rd.Release(recs[i].Position); err != nil {
			t.Fatal(err)
		}
		if r.Head() != 0 {
			t.Fatalf("head moved to %d past unreleased record 0", r.Head())
		}
	}
	rd.Release(recs[0].Position)
	if r.Head() != recs[2].Position {
		t.Fatalf("head %d, want %d (stops at unreleased record 2)", r.Head(), recs[2].Position)
	}
	rd.Release(recs[2].Position)
	if r.Head() != rd.Position() {
		t.Fatalf("head %d, want %d", r.Head(), rd.Position())
	}
	if err := rd.Release(recs[2].Position); err == nil {
		t.Fatal("double release accepted")
	}
	if err := rd.Release(rd.Position()); err == nil {
		t.Fatal("release of an unpolled position accepted")
	}
}

// TestSlowReader runs a writer goroutine against a reader that is slower than it, across
// many wraps, with releases from several goroutines in random order.
func TestSlowReader(t *testing.T) {
	r := testRing(t, KindData, 1<<14)
	w, _ := NewWriter(r)
	rd, _ := NewReader(r)
	const total = 20000
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		rng := rand.New(rand.NewSource(2))
		for i := 0; i < total; i++ {
			n := rng.Intn(3000)
			c, err := w.Claim(ctx, TypeRaw, 0, n, nil)
			if err != nil {
				errc <- err
				return
			}
			fillPayload(c.Body(), w.NextBatchID(), 5)
			c.Commit(1)
		}
		w.Close()
		errc <- nil
	}()
	rel := make(chan int64, 64)
	var wg sync.WaitGroup
	for g := 0; g < 3; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range rel {
				if err := rd.Release(p); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	idle := DefaultIdle()
	var next int64 = 1
	for next <= total {
		rec, ok, err := rd.Poll()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			if ctx.Err() != nil {
				t.Fatalf("timed out at batch %d", next)
			}
			idle.Idle(0)
			continue
		}
		idle.Reset()
		if rec.BatchID != next || !checkPayload(rec.Body, rec.BatchID) {
			t.Fatalf("batch %d: got id %d checksum ok %v", next, rec.BatchID, checkPayload(rec.Body, rec.BatchID))
		}
		if next%7 == 0 {
			time.Sleep(20 * time.Microsecond) // slower than the writer
		}
		rel <- rec.Position
		next++
	}
	close(rel)
	wg.Wait()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !rd.ProducerClosed() {
		t.Error("producer close not seen")
	}
	if r.Head() != r.Tail() {
		t.Errorf("head %d != tail %d after releasing all", r.Head(), r.Tail())
	}
}

func deadPid(t *testing.T) int64 {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return int64(cmd.Process.Pid)
}

// TestSkipHalfWrittenRecord: a producer that died between claim and commit leaves a
// negative length; the reader skips it once the producer is dead.
func TestSkipHalfWrittenRecord(t *testing.T) {
	r := testRing(t, KindData, 1<<14)
	w, _ := NewWriter(r)
	rd, _ := NewReader(r)
	rd.DeadProducerTimeout = 50 * time.Millisecond
	writeRaw(t, w, 10, 1)
	if _, err := w.TryClaim(TypeRaw, 0, 500); err != nil { // never committed
		t.Fatal(err)
	}
	rec, ok, _ := rd.Poll()
	if !ok || rec.BatchID != 1 {
		t.Fatal("first record not read")
	}
	rd.Release(rec.Position)
	// The producer is alive: the reader waits.
	for i := 0; i < 5; i++ {
		if _, ok, err := rd.Poll(); ok || err != nil {
			t.Fatalf("read a half-written record: ok=%v err=%v", ok, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The producer "dies": its pid is gone. A new producer (restarted) would recreate the
	// ring; here we append by hand after the dead claim to check the reader resumes.
	binary.LittleEndian.PutUint64(r.mem[ProducerPidOffset:], uint64(deadPid(t)))
	w2 := &Writer{r: r, path: r.path, tail: r.Tail(), nextID: 2}
	writeRaw(t, w2, 20, 1)
	deadline := time.Now().Add(5 * time.Second)
	for {
		rec, ok, err := rd.Poll()
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			if rec.BatchID != 2 || len(rec.Body) != 20 {
				t.Fatalf("after skip got batch %d len %d", rec.BatchID, len(rec.Body))
			}
			rd.Release(rec.Position)
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("half-written record never skipped")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if rd.Skipped() != 1 || r.Head() != r.Tail() {
		t.Errorf("skipped %d, head %d tail %d", rd.Skipped(), r.Head(), r.Tail())
	}
}

func TestCorruptRecordIsAnError(t *testing.T) {
	le := binary.LittleEndian
	cases := []struct {
		name   string
		mutate func(rec []byte)
		field  string
	}{
		{"length beyond max", func(b []byte) { le.PutUint32(b[RecLengthOffset:], 1<<30) }, "length"},
		{"length crosses end", func(b []byte) { le.PutUint32(b[RecLengthOffset:], 3000) }, "length"},
		{"bad type", func(b []byte) { le.PutUint32(b[RecTypeOffset:], 9) }, "type"},
		{"stale position", func(b []byte) { le.PutUint64(b[RecPositionOffset:], 4096) }, "position"},
		{"bad body_offset", func(b []byte) { le.PutUint32(b[RecBodyOffsetOffset:], 128) }, "body_offset"},
		{"bad body_length", func(b []byte) { le.PutUint64(b[RecBodyLengthOffset:], 1<<40) }, "body_length"},
		{"meta for raw", func(b []byte) { le.PutUint32(b[RecMetaLengthOffset:], 8) }, "meta_length"},
		{"zero batch", func(b []byte) { le.PutUint64(b[RecBatchIDOffset:], 0) }, "batch_id"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := testRing(t, KindData, 4096)
			w, _ := NewWriter(r)
			rd, _ := NewReader(r)
			writeRaw(t, w, 100, 1)
			off := r.area(0)
			c.mutate(r.mem[off : off+RecordHeaderLength])
			_, ok, err := rd.Poll()
			if ok || !errors.Is(err, ErrCorruptRecord) || !strings.Contains(err.Error(), c.field) {
				t.Fatalf("ok=%v err=%v, want ErrCorruptRecord naming %s", ok, err, c.field)
			}
			if rd.Position() != 0 {
				t.Error("reader advanced past a corrupt record")
			}
		})
	}
}
