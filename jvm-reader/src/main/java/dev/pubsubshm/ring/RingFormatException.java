package dev.pubsubshm.ring;

import java.nio.file.Path;

/**
 * A ring file or record broke a rule of {@code docs/FORMAT.md}, or a ring operation could not
 * be carried out (full, closed, peer dead). Unchecked: a corrupt shared file is not something
 * a caller can recover from locally, and the hot path must not pay for checked plumbing.
 *
 * <p>The message names the file, the field and the value read, and the rule, e.g.
 * {@code bad header field capacity=4095 in "/dev/shm/pubsub-shm-1000/s/data-0.ring": must be
 * a power of two in [4096, 1073741824]}. {@link #kind()} carries the same names as the Go
 * sentinel errors in {@code ringbuf/errors.go}.
 */
public final class RingFormatException extends RuntimeException
{
    private static final long serialVersionUID = 1L;

    /** What went wrong; the names match the Go sentinels ({@code ErrBadMagic} is {@link #BAD_MAGIC}). */
    public enum Kind
    {
        /** The file does not start with the ring magic: it is not a ring file. */
        BAD_MAGIC,
        /** The layout major version is not one this code reads. */
        VERSION,
        /** {@code layout_version} stayed 0 until the open timeout: the creator has not finished. */
        NOT_READY,
        /** A header field breaks a rule. */
        BAD_HEADER,
        /** The file is shorter than a ring file or than its header says. */
        TRUNCATED,
        /** A record header breaks a rule; the reader does not advance past it. */
        CORRUPT_RECORD,
        /** Not enough free space in the ring (back-pressure) within the allowed wait. */
        FULL,
        /** The ring, reader or writer was closed. */
        CLOSED,
        /** A record is larger than the ring can ever hold. */
        TOO_LARGE,
        /** The file or its directory is owned by another user or accessible to group/others. */
        PERMISSION,
        /** The process on the other side is gone or stopped heart-beating. */
        PEER_DEAD
    }

    private final Kind kind;
    private final String path;
    private final String field;

    /**
     * Creates an exception with a ready-made message.
     *
     * @param kind    what went wrong.
     * @param path    the ring file, or {@code null} if none is involved.
     * @param field   the FORMAT.md field name involved, or {@code null}.
     * @param message the whole message.
     * @param cause   the underlying exception, or {@code null}.
     */
    public RingFormatException(
        final Kind kind, final String path, final String field, final String message, final Throwable cause)
    {
        super(message, cause);
        this.kind = kind;
        this.path = path;
        this.field = field;
    }

    /**
     * A header field that breaks a rule: {@code bad header field F=V in "P": RULE}.
     *
     * @param kind  usually {@link Kind#BAD_HEADER}; {@link Kind#VERSION}, {@link Kind#BAD_MAGIC},
     *              {@link Kind#TRUNCATED} and {@link Kind#NOT_READY} for those fields.
     * @param path  the ring file.
     * @param field the field name as in FORMAT.md.
     * @param value the value read.
     * @param rule  the rule it breaks.
     * @return the exception, to be thrown by the caller.
     */
    public static RingFormatException header(
        final Kind kind, final Path path, final String field, final Object value, final String rule)
    {
        return new RingFormatException(
            kind, String.valueOf(path), field,
            "bad header field " + field + "=" + value + " in \"" + path + "\": " + rule, null);
    }

    /**
     * A record field that breaks a rule:
     * {@code corrupt record at position=N field F=V in "P": RULE}.
     *
     * @param path     the ring file.
     * @param position the stream position the record was read at.
     * @param field    the field name as in FORMAT.md.
     * @param value    the value read.
     * @param rule     the rule it breaks.
     * @return the {@link Kind#CORRUPT_RECORD} exception, to be thrown by the caller.
     */
    public static RingFormatException record(
        final Path path, final long position, final String field, final Object value, final String rule)
    {
        return new RingFormatException(
            Kind.CORRUPT_RECORD, String.valueOf(path), field,
            "corrupt record at position=" + position + " field " + field + "=" + value +
            " in \"" + path + "\": " + rule, null);
    }

    /**
     * An operation that could not be carried out on a ring: {@code MESSAGE in "P"}.
     *
     * @param kind    what went wrong.
     * @param path    the ring file.
     * @param message what was attempted and the values involved.
     * @return the exception, to be thrown by the caller.
     */
    public static RingFormatException ring(final Kind kind, final Path path, final String message)
    {
        return new RingFormatException(kind, String.valueOf(path), null, message + " in \"" + path + "\"", null);
    }

    /**
     * What went wrong.
     *
     * @return the kind, never {@code null}.
     */
    public Kind kind()
    {
        return kind;
    }

    /**
     * The ring file involved.
     *
     * @return the path as a string, or {@code null}.
     */
    public String path()
    {
        return path;
    }

    /**
     * The FORMAT.md field that broke a rule.
     *
     * @return the field name, or {@code null} when no single field is to blame.
     */
    public String field()
    {
        return field;
    }
}
