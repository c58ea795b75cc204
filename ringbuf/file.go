package ringbuf

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// DefaultDir returns the root directory for ring sets: $PUBSUB_SHM_DIR if set, else
// /dev/shm/pubsub-shm-<uid>.
func DefaultDir() string {
	if d := os.Getenv("PUBSUB_SHM_DIR"); d != "" {
		return d
	}
	return fmt.Sprintf("/dev/shm/pubsub-shm-%d", os.Geteuid())
}

// EnsureDir creates dir (and missing parents) with mode 0700 and checks that the final
// directory is owned by the current user and not accessible to group or others.
func EnsureDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("ringbuf: create ring directory %q: %w", dir, err)
	}
	return checkOwner(dir, true)
}

func checkOwner(path string, isDir bool) error {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return fmt.Errorf("ringbuf: stat %q: %w", path, err)
	}
	if int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("%w: %q is owned by uid %d, not by uid %d", ErrPermission, path, st.Uid, os.Geteuid())
	}
	if st.Mode&0o077 != 0 {
		return fmt.Errorf("%w: %q has mode %#o; it must not be accessible to group or others (want %#o)",
			ErrPermission, path, st.Mode&0o777, map[bool]int{true: 0o700, false: 0o600}[isDir])
	}
	return nil
}

// CreateOptions describe a new ring file.
type CreateOptions struct {
	Kind      Kind
	Capacity  int64  // ring area bytes: a power of two in [MinCapacity, MaxCapacity]
	Partition int32  // virtual partition of a DATA/OUTBOUND ring; ignored (-1) for COMMIT
	Schema    []byte // Arrow IPC encapsulated Schema message (DATA/OUTBOUND), may be nil
	// Replace allows replacing an existing file (a stale ring of a previous process). The
	// old file is replaced atomically; processes that still map it keep the old memory
	// and see its producer dead.
	Replace bool

	// For deterministic golden files only; zero means "choose" (random id, now).
	InstanceID uint64
	CreatedNs  int64
}

// Ring is one mapped ring file. The mapping lives until Close; every slice a Ring, a
// reader or a writer hands out points into it and must not be used after Close.
type Ring struct {
	path       string
	mem        []byte
	kind       Kind
	headerLen  int64
	capacity   int64
	mask       int64
	instanceID uint64
	partition  int32
	maxRecord  int64
	closed     atomic.Bool
}

// Create makes a ring file at path, reserving its memory for real with fallocate (a full
// file system is ErrNoSpace here, never a SIGBUS later), with mode 0600 in a directory
// that must be owned by the user and mode 0700 (see EnsureDir). The header is written
// with layout_version last, in a temporary file that is then renamed to path.
func Create(path string, o CreateOptions) (*Ring, error) {
	if o.Kind != KindData && o.Kind != KindCommit && o.Kind != KindOutbound {
		return nil, fmt.Errorf("ringbuf: create %q: unknown ring kind %d", path, o.Kind)
	}
	if o.Capacity < MinCapacity || o.Capacity > MaxCapacity || bits.OnesCount64(uint64(o.Capacity)) != 1 {
		return nil, fmt.Errorf("ringbuf: create %q: capacity=%d must be a power of two in [%d, %d]", path, o.Capacity, MinCapacity, MaxCapacity)
	}
	headerLen := int64(DefaultHeaderLength)
	if need := int64(SchemaStart + len(o.Schema)); need > headerLen {
		headerLen = Align(need, PageSize)
	}
	if o.Kind == KindCommit {
		o.Partition = -1
		o.Schema = nil
	} else if o.Partition < 0 {
		return nil, fmt.Errorf("ringbuf: create %q: partition=%d must be >= 0 for a %v ring", path, o.Partition, o.Kind)
	}
	dir := filepath.Dir(path)
	if err := checkOwner(dir, true); err != nil {
		return nil, fmt.Errorf("ringbuf: create %q: %w", path, err)
	}
	if !o.Replace {
		if _, err := os.Lstat(path); err == nil {
			return nil, fmt.Errorf("%w: %q", ErrExists, path)
		}
	}
	fileLen := headerLen + o.Capacity
	tmp := filepath.Join(dir, fmt.Sprintf(".%s.tmp-%d", filepath.Base(path), os.Getpid()))
	fd, err := unix.Open(tmp, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("ringbuf: create %q: %w", tmp, err)
	}
	defer unix.Close(fd)
	ok := false
	defer func() {
		if !ok {
			_ = unix.Unlink(tmp)
		}
	}()
	if err := unix.Fchmod(fd, 0o600); err != nil { // umask-proof
		return nil, fmt.Errorf("ringbuf: chmod %q: %w", tmp, err)
	}
	if err := unix.Fallocate(fd, 0, 0, fileLen); err != nil {
		if errors.Is(err, unix.ENOSPC) {
			var sfs unix.Statfs_t
			free := "unknown"
			if unix.Statfs(dir, &sfs) == nil {
				free = fmt.Sprintf("%d", int64(sfs.Bavail)*int64(sfs.Bsize))
			}
			return nil, fmt.Errorf("%w: %q needs %d bytes but %s has %s bytes free (raise the size of /dev/shm, e.g. docker --shm-size, or lower the ring capacity)",
				ErrNoSpace, path, fileLen, dir, free)
		}
		if errors.Is(err, unix.EOPNOTSUPP) {
			// Not tmpfs (a test directory on a disk without fallocate): fall back to
			// writing the file out, which also reserves the blocks.
			if err := unix.Ftruncate(fd, fileLen); err != nil {
				return nil, fmt.Errorf("ringbuf: size %q: %w", tmp, err)
			}
		} else {
			return nil, fmt.Errorf("ringbuf: fallocate %q (%d bytes): %w", tmp, fileLen, err)
		}
	}
	mem, err := unix.Mmap(fd, 0, int(fileLen), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("ringbuf: mmap %q: %w", tmp, err)
	}
	id := o.InstanceID
	for id == 0 {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			_ = unix.Munmap(mem)
			return nil, fmt.Errorf("ringbuf: instance id: %w", err)
		}
		id = binary.LittleEndian.Uint64(b[:])
	}
	created := o.CreatedNs
	if created == 0 {
		created = time.Now().UnixNano()
	}
	le := binary.LittleEndian
	le.PutUint64(mem[MagicOffset:], Magic)
	le.PutUint32(mem[KindOffset:], uint32(o.Kind))
	le.PutUint32(mem[HeaderLengthOffset:], uint32(headerLen))
	le.PutUint32(mem[AlignmentOffset:], RecordAlignment)
	le.PutUint64(mem[CapacityOffset:], uint64(o.Capacity))
	le.PutUint64(mem[FileLengthOffset:], uint64(fileLen))
	le.PutUint64(mem[InstanceIDOffset:], id)
	le.PutUint64(mem[CreatedOffset:], uint64(created))
	le.PutUint32(mem[PartitionOffset:], uint32(o.Partition))
	le.PutUint32(mem[MaxRecordLengthOffset:], uint32(maxRecordFor(o.Kind, o.Capacity)))
	if len(o.Schema) > 0 {
		le.PutUint32(mem[SchemaLengthOffset:], uint32(len(o.Schema)))
		le.PutUint32(mem[SchemaOffsetOffset:], SchemaStart)
		copy(mem[SchemaStart:], o.Schema)
	} else {
		le.PutUint32(mem[SchemaOffsetOffset:], SchemaStart)
	}
	// layout_version last: an opener that sees it sees everything above.
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&mem[VersionOffset])), LayoutVersion)
	if err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, path, renameFlags(o.Replace)); err != nil {
		_ = unix.Munmap(mem)
		if errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("%w: %q", ErrExists, path)
		}
		return nil, fmt.Errorf("ringbuf: rename %q to %q: %w", tmp, path, err)
	}
	ok = true
	return newRing(path, mem)
}

func renameFlags(replace bool) uint {
	if replace {
		return 0
	}
	return unix.RENAME_NOREPLACE
}

func maxRecordFor(k Kind, capacity int64) int64 {
	if k == KindCommit {
		return CommitRecordLength
	}
	return capacity / 2
}

// OpenOptions tune Open.
type OpenOptions struct {
	// Kind, if non-zero, is the ring kind the caller expects.
	Kind Kind
	// NotReadyTimeout is how long to wait for layout_version to become non-zero.
	NotReadyTimeout time.Duration
}

// Open maps an existing ring file and validates every header field before returning.
// The file must be owned by the current user with no group/other permission bits.
func Open(path string, o OpenOptions) (*Ring, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return nil, fmt.Errorf("%w: open %q: %v", ErrPermission, path, err)
		}
		return nil, fmt.Errorf("ringbuf: open ring %q: %w", path, err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, fmt.Errorf("ringbuf: stat %q: %w", path, err)
	}
	if int(st.Uid) != os.Geteuid() {
		return nil, fmt.Errorf("%w: %q is owned by uid %d, not by uid %d", ErrPermission, path, st.Uid, os.Geteuid())
	}
	if st.Mode&0o077 != 0 {
		return nil, fmt.Errorf("%w: %q has mode %#o; it must not be accessible to group or others (want 0600)", ErrPermission, path, st.Mode&0o777)
	}
	if st.Size < PageSize {
		return nil, headerErr(path, ErrTruncated, "file_size", st.Size, fmt.Sprintf("a ring file is at least %d bytes", PageSize))
	}
	if st.Size > MaxCapacity+1<<24 {
		return nil, headerErr(path, ErrBadHeader, "file_size", st.Size, "larger than any valid ring")
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, int(st.Size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("ringbuf: mmap %q: %w", path, err)
	}
	deadline := time.Now().Add(o.NotReadyTimeout)
	for {
		v := atomic.LoadUint32((*uint32)(unsafe.Pointer(&mem[VersionOffset])))
		if v != 0 || !time.Now().Before(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if err := ValidateHeader(path, mem, st.Size, o.Kind); err != nil {
		_ = unix.Munmap(mem)
		return nil, err
	}
	return newRing(path, mem)
}

// ValidateHeader checks every header field of a ring image against docs/FORMAT.md.
// mem must hold at least the header; fileSize is the size of the whole file. want, if
// non-zero, is the expected kind. It reads layout_version first.
func ValidateHeader(path string, mem []byte, fileSize int64, want Kind) error {
	if len(mem) < PageSize {
		return headerErr(path, ErrTruncated, "file_size", len(mem), fmt.Sprintf("a ring file is at least %d bytes", PageSize))
	}
	le := binary.LittleEndian
	v := atomic.LoadUint32((*uint32)(unsafe.Pointer(&mem[VersionOffset])))
	if v == 0 {
		return headerErr(path, ErrNotReady, "layout_version", 0, "the creator has not finished initialising the file")
	}
	if v>>16 != VersionMajor {
		return headerErr(path, ErrVersion, "layout_version", fmt.Sprintf("%d.%d", v>>16, v&0xffff),
			fmt.Sprintf("this build reads major version %d", VersionMajor))
	}
	if m := le.Uint64(mem[MagicOffset:]); m != Magic {
		return headerErr(path, ErrBadMagic, "magic", fmt.Sprintf("%#x", m), fmt.Sprintf("want %#x (\"PSSHMRNG\")", Magic))
	}
	k := Kind(le.Uint32(mem[KindOffset:]))
	if k != KindData && k != KindCommit && k != KindOutbound {
		return headerErr(path, ErrBadHeader, "ring_kind", uint32(k), "must be 1 (DATA), 2 (COMMIT) or 3 (OUTBOUND)")
	}
	if want != 0 && k != want {
		return headerErr(path, ErrBadHeader, "ring_kind", k.String(), "expected a "+want.String()+" ring")
	}
	hl := int64(le.Uint32(mem[HeaderLengthOffset:]))
	if hl < PageSize || hl%PageSize != 0 {
		return headerErr(path, ErrBadHeader, "header_length", hl, fmt.Sprintf("must be a multiple of %d, at least %d", PageSize, PageSize))
	}
	if a := le.Uint32(mem[AlignmentOffset:]); a != RecordAlignment {
		return headerErr(path, ErrBadHeader, "record_alignment", a, fmt.Sprintf("must be %d", RecordAlignment))
	}
	c := le.Uint64(mem[CapacityOffset:])
	if c < MinCapacity || c > MaxCapacity || bits.OnesCount64(c) != 1 {
		return headerErr(path, ErrBadHeader, "capacity", c, fmt.Sprintf("must be a power of two in [%d, %d]", MinCapacity, MaxCapacity))
	}
	fl := le.Uint64(mem[FileLengthOffset:])
	if fl != uint64(hl)+c {
		return headerErr(path, ErrBadHeader, "file_length", fl, fmt.Sprintf("must equal header_length + capacity = %d", uint64(hl)+c))
	}
	if int64(fl) > fileSize {
		return headerErr(path, ErrTruncated, "file_length", fl, fmt.Sprintf("the file has only %d bytes", fileSize))
	}
	if int64(fl) != fileSize {
		return headerErr(path, ErrBadHeader, "file_length", fl, fmt.Sprintf("must equal the file size %d", fileSize))
	}
	if id := le.Uint64(mem[InstanceIDOffset:]); id == 0 {
		return headerErr(path, ErrBadHeader, "ring_instance_id", 0, "must be non-zero")
	}
	p := int32(le.Uint32(mem[PartitionOffset:]))
	if k == KindCommit && p != -1 {
		return headerErr(path, ErrBadHeader, "partition", p, "must be -1 for a COMMIT ring")
	}
	if k != KindCommit && p < 0 {
		return headerErr(path, ErrBadHeader, "partition", p, "must be >= 0 for a "+k.String()+" ring")
	}
	if mr := int64(le.Uint32(mem[MaxRecordLengthOffset:])); mr != maxRecordFor(k, int64(c)) {
		return headerErr(path, ErrBadHeader, "max_record_length", mr, fmt.Sprintf("must be %d for a %v ring of capacity %d", maxRecordFor(k, int64(c)), k, c))
	}
	so := int64(le.Uint32(mem[SchemaOffsetOffset:]))
	sl := int64(le.Uint32(mem[SchemaLengthOffset:]))
	if so != SchemaStart {
		return headerErr(path, ErrBadHeader, "schema_offset", so, fmt.Sprintf("must be %d", SchemaStart))
	}
	if so+sl > hl {
		return headerErr(path, ErrBadHeader, "schema_length", sl, fmt.Sprintf("schema_offset + schema_length must be <= header_length %d", hl))
	}
	if k == KindCommit && sl != 0 {
		return headerErr(path, ErrBadHeader, "schema_length", sl, "must be 0 for a COMMIT ring")
	}
	tail := int64(le.Uint64(mem[TailOffset:]))
	head := int64(le.Uint64(mem[HeadOffset:]))
	if head < 0 || tail < head || tail-head > int64(c) || head%RecordAlignment != 0 || tail%RecordAlignment != 0 {
		return headerErr(path, ErrBadHeader, "head_position/tail_position", fmt.Sprintf("%d/%d", head, tail),
			fmt.Sprintf("need 0 <= head <= tail <= head + capacity(%d), both multiples of %d", c, RecordAlignment))
	}
	return nil
}

func newRing(path string, mem []byte) (*Ring, error) {
	le := binary.LittleEndian
	r := &Ring{
		path:       path,
		mem:        mem,
		kind:       Kind(le.Uint32(mem[KindOffset:])),
		headerLen:  int64(le.Uint32(mem[HeaderLengthOffset:])),
		capacity:   int64(le.Uint64(mem[CapacityOffset:])),
		instanceID: le.Uint64(mem[InstanceIDOffset:]),
		partition:  int32(le.Uint32(mem[PartitionOffset:])),
		maxRecord:  int64(le.Uint32(mem[MaxRecordLengthOffset:])),
	}
	r.mask = r.capacity - 1
	return r, nil
}

// Path returns the file the ring was opened or created at.
func (r *Ring) Path() string { return r.path }

// Kind returns the ring kind.
func (r *Ring) Kind() Kind { return r.kind }

// Capacity returns the size of the ring area in bytes.
func (r *Ring) Capacity() int64 { return r.capacity }

// InstanceID returns ring_instance_id, which changes whenever the ring is recreated.
func (r *Ring) InstanceID() uint64 { return r.instanceID }

// Partition returns the virtual partition of a DATA/OUTBOUND ring, -1 for COMMIT.
func (r *Ring) Partition() int32 { return r.partition }

// MaxRecordLength returns the largest record the ring accepts, header included.
func (r *Ring) MaxRecordLength() int64 { return r.maxRecord }

// Schema returns the schema bytes stored in the header (valid until Close).
func (r *Ring) Schema() []byte {
	n := binary.LittleEndian.Uint32(r.mem[SchemaLengthOffset:])
	return r.mem[SchemaStart : SchemaStart+int64(n)]
}

// Head returns head_position (everything before it is released).
func (r *Ring) Head() int64 { return atomic.LoadInt64(r.i64(HeadOffset)) }

// Tail returns tail_position (the next byte to claim).
func (r *Ring) Tail() int64 { return atomic.LoadInt64(r.i64(TailOffset)) }

// Used returns tail - head: bytes held by the ring.
func (r *Ring) Used() int64 { return r.Tail() - r.Head() }

// Close unmaps the ring. Slices obtained from it must not be used afterwards. Close is
// idempotent.
func (r *Ring) Close() error {
	if !r.closed.CompareAndSwap(false, true) {
		return nil
	}
	return unix.Munmap(r.mem)
}

// Unlink removes the ring file (the mapping stays valid until Close).
func (r *Ring) Unlink() error {
	if err := os.Remove(r.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("ringbuf: unlink %q: %w", r.path, err)
	}
	return nil
}

func (r *Ring) i64(off int64) *int64       { return (*int64)(unsafe.Pointer(&r.mem[off])) }
func (r *Ring) i32(off int64) *int32       { return (*int32)(unsafe.Pointer(&r.mem[off])) }
func (r *Ring) area(pos int64) int64       { return r.headerLen + pos&r.mask }
func (r *Ring) u64(off int64) uint64       { return binary.LittleEndian.Uint64(r.mem[off:]) }
func (r *Ring) putU64(off int64, v uint64) { binary.LittleEndian.PutUint64(r.mem[off:], v) }

// Identity of a process attached to a ring.
type Identity struct {
	Pid         int64
	StartTicks  int64
	HeartbeatNs int64 // CLOCK_MONOTONIC
	Closed      bool
}

// Role is the side of a ring.
type Role int

// Roles.
const (
	Producer Role = iota
	Consumer
)

func (r Role) base() int64 {
	if r == Producer {
		return ProducerIdentityOffset
	}
	return ConsumerIdentityOffset
}

func (r Role) String() string {
	if r == Producer {
		return "producer"
	}
	return "consumer"
}

// Attach stamps this process as the ring's producer or consumer (pid, start time,
// heartbeat) and clears the closed flag.
func (r *Ring) Attach(role Role) {
	b := role.base()
	atomic.StoreInt64(r.i64(b+idPidOffset), int64(os.Getpid()))
	atomic.StoreInt64(r.i64(b+idStartOffset), selfStartTicks)
	atomic.StoreInt64(r.i64(b+idClosedOffset), 0)
	r.Heartbeat(role)
}

// Heartbeat stores the current CLOCK_MONOTONIC time in the role's heartbeat field. Call
// it at least every 500 ms while attached.
func (r *Ring) Heartbeat(role Role) {
	atomic.StoreInt64(r.i64(role.base()+idHeartbeatOffset), MonotonicNs())
}

// Detach sets the role's closed flag (clean end of stream / clean exit).
func (r *Ring) Detach(role Role) {
	atomic.StoreInt64(r.i64(role.base()+idClosedOffset), 1)
}

// Peer returns the identity stored for a role.
func (r *Ring) Peer(role Role) Identity {
	b := role.base()
	return Identity{
		Pid:         atomic.LoadInt64(r.i64(b + idPidOffset)),
		StartTicks:  atomic.LoadInt64(r.i64(b + idStartOffset)),
		HeartbeatNs: atomic.LoadInt64(r.i64(b + idHeartbeatOffset)),
		Closed:      atomic.LoadInt64(r.i64(b+idClosedOffset)) != 0,
	}
}

// PeerAlive reports whether the process attached as role is alive: the pid exists with the
// same start time and its heartbeat is younger than timeout. A role nobody attached to
// (pid 0) is reported not alive with reason "not attached". The reason names what failed.
func (r *Ring) PeerAlive(role Role, timeout time.Duration) (bool, string) {
	id := r.Peer(role)
	if id.Pid == 0 {
		return false, role.String() + " not attached"
	}
	if !ProcessAlive(id.Pid, id.StartTicks) {
		return false, fmt.Sprintf("%s pid %d (start %d) is gone", role, id.Pid, id.StartTicks)
	}
	if age := time.Duration(MonotonicNs() - id.HeartbeatNs); age > timeout {
		return false, fmt.Sprintf("%s pid %d heartbeat is %v old (timeout %v)", role, id.Pid, age.Round(time.Millisecond), timeout)
	}
	return true, ""
}

// MonotonicNs returns CLOCK_MONOTONIC in nanoseconds, the clock of every heartbeat (the
// same clock as Java's System.nanoTime on Linux).
func MonotonicNs() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

var selfStartTicks = func() int64 { t, _ := StartTicks(int64(os.Getpid())); return t }()

// StartTicks returns a process's start time in clock ticks since boot
// (/proc/<pid>/stat field 22), which tells a process from a later one with the same pid.
func StartTicks(pid int64) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces and parentheses: fields resume after the
	// last ')'.
	i := len(b) - 1
	for i >= 0 && b[i] != ')' {
		i--
	}
	if i < 0 {
		return 0, fmt.Errorf("ringbuf: unparsable /proc/%d/stat", pid)
	}
	field := 2
	var v int64
	inField := false
	for _, c := range b[i+1:] {
		if c == ' ' {
			if inField {
				field++
				inField = false
			}
			continue
		}
		if !inField {
			inField = true
			if field == 21 {
				v = 0
			}
		}
		if field == 21 { // 0-based counting from field 2 -> field 22
			if c < '0' || c > '9' {
				return 0, fmt.Errorf("ringbuf: bad start time in /proc/%d/stat", pid)
			}
			v = v*10 + int64(c-'0')
		}
		if field > 21 {
			break
		}
	}
	return v, nil
}

// ProcessAlive reports whether pid runs and, if startTicks is non-zero, started at
// startTicks.
func ProcessAlive(pid, startTicks int64) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(int(pid), 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	if startTicks == 0 {
		return true
	}
	t, err := StartTicks(pid)
	return err == nil && t == startTicks
}
