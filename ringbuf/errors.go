package ringbuf

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error this package returns wraps one of them, so callers can
// test with errors.Is; the wrapping error names the file, the field and the value.
var (
	// ErrBadMagic: the file does not start with the ring magic; it is not a ring file.
	ErrBadMagic = errors.New("ringbuf: bad magic")
	// ErrVersion: the layout major version is not one this package reads.
	ErrVersion = errors.New("ringbuf: unsupported layout version")
	// ErrNotReady: the layout version is still 0 after the open timeout; the creator has
	// not finished initialising the file (or died while doing so).
	ErrNotReady = errors.New("ringbuf: ring not initialised")
	// ErrBadHeader: a header field breaks a rule of docs/FORMAT.md.
	ErrBadHeader = errors.New("ringbuf: bad header")
	// ErrTruncated: the file is shorter than its header says.
	ErrTruncated = errors.New("ringbuf: truncated file")
	// ErrCorruptRecord: a record header breaks a rule of docs/FORMAT.md.
	ErrCorruptRecord = errors.New("ringbuf: corrupt record")
	// ErrFull: not enough free space in the ring (back-pressure); retry after the
	// consumer releases records.
	ErrFull = errors.New("ringbuf: ring full")
	// ErrClosed: the ring, writer or reader was closed.
	ErrClosed = errors.New("ringbuf: closed")
	// ErrTooLarge: a record is larger than the ring's max_record_length.
	ErrTooLarge = errors.New("ringbuf: record too large")
	// ErrPermission: a ring file or directory is owned by another user or is accessible
	// to group or others.
	ErrPermission = errors.New("ringbuf: insecure ring file")
	// ErrNoSpace: the file system (usually /dev/shm) cannot hold the ring.
	ErrNoSpace = errors.New("ringbuf: no space for ring")
	// ErrPeerDead: the process on the other side of the ring is gone or stopped
	// heart-beating.
	ErrPeerDead = errors.New("ringbuf: peer dead")
	// ErrExists: a ring file already exists where one was to be created.
	ErrExists = errors.New("ringbuf: ring exists")
	// ErrAborted: a commit record slot was abandoned by the consumer before the producer
	// published it (the producer stalled past the unblock timeout); write it again.
	ErrAborted = errors.New("ringbuf: claim abandoned")
)

// FieldError reports a field that breaks a rule of docs/FORMAT.md.
type FieldError struct {
	Path  string // ring file
	Where string // "header" or "record at position N"
	Field string // field name as in docs/FORMAT.md
	Value any    // the value read
	Rule  string // the rule it breaks
	Err   error  // sentinel
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("%v: %s field %s=%v in %q: %s", e.Err, e.Where, e.Field, e.Value, e.Path, e.Rule)
}

// Unwrap returns the sentinel error.
func (e *FieldError) Unwrap() error { return e.Err }

func headerErr(path string, sentinel error, field string, value any, rule string) error {
	return &FieldError{Path: path, Where: "header", Field: field, Value: value, Rule: rule, Err: sentinel}
}

func recordErr(path string, pos int64, field string, value any, rule string) error {
	return &FieldError{Path: path, Where: fmt.Sprintf("record at position %d:", pos), Field: field, Value: value, Rule: rule, Err: ErrCorruptRecord}
}
