package dev.pubsubshm.ring;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import static dev.pubsubshm.ring.RingDescriptor.*;

/**
 * The golden files in testdata/golden/ shared with the Go side, and their text sidecars: one
 * {@code key=value} line per header field (unsigned fields in unsigned decimal), then one
 * {@code record key=value ...} line per record; {@code #} lines are comments.
 */
final class GoldenFiles
{
    /** Set by surefire; the fallback serves a run from the jvm-reader directory. */
    static final Path DIR = Path.of(System.getProperty("golden.dir", "../testdata/golden"));
    /** {@code -Dgolden.update=true} rewrites the Java-written golden files (Go's {@code -update}). */
    static final boolean UPDATE = Boolean.getBoolean("golden.update");

    private GoldenFiles()
    {
    }

    /** A header field: name as in FORMAT.md, file offset, width in bytes, signedness. */
    record Field(String name, int offset, int size, boolean signed)
    {
        String read(final ByteBuffer file)
        {
            if (size == SIZE_OF_LONG)
            {
                final long v = file.getLong(offset);
                return signed ? Long.toString(v) : Long.toUnsignedString(v);
            }
            final int v = file.getInt(offset);
            return signed ? Integer.toString(v) : Integer.toUnsignedString(v);
        }
    }

    /** Every header field of FORMAT.md section 2, in file order. */
    static final List<Field> HEADER_FIELDS = List.of(
        new Field("magic", MAGIC_OFFSET, 8, false),
        new Field("layout_version", LAYOUT_VERSION_OFFSET, 4, false),
        new Field("ring_kind", RING_KIND_OFFSET, 4, false),
        new Field("header_length", HEADER_LENGTH_OFFSET, 4, false),
        new Field("record_alignment", RECORD_ALIGNMENT_OFFSET, 4, false),
        new Field("capacity", CAPACITY_OFFSET, 8, false),
        new Field("file_length", FILE_LENGTH_OFFSET, 8, false),
        new Field("ring_instance_id", RING_INSTANCE_ID_OFFSET, 8, false),
        new Field("created_unix_ns", CREATED_UNIX_NS_OFFSET, 8, true),
        new Field("partition", PARTITION_OFFSET, 4, true),
        new Field("max_record_length", MAX_RECORD_LENGTH_OFFSET, 4, false),
        new Field("producer_pid", PRODUCER_PID_OFFSET, 8, true),
        new Field("producer_start_ticks", PRODUCER_START_TICKS_OFFSET, 8, true),
        new Field("producer_heartbeat_ns", PRODUCER_HEARTBEAT_NS_OFFSET, 8, true),
        new Field("producer_closed", PRODUCER_CLOSED_OFFSET, 8, true),
        new Field("consumer_pid", CONSUMER_PID_OFFSET, 8, true),
        new Field("consumer_start_ticks", CONSUMER_START_TICKS_OFFSET, 8, true),
        new Field("consumer_heartbeat_ns", CONSUMER_HEARTBEAT_NS_OFFSET, 8, true),
        new Field("consumer_closed", CONSUMER_CLOSED_OFFSET, 8, true),
        new Field("tail_position", TAIL_POSITION_OFFSET, 8, true),
        new Field("head_position", HEAD_POSITION_OFFSET, 8, true),
        new Field("schema_length", SCHEMA_LENGTH_OFFSET, 4, false),
        new Field("schema_offset", SCHEMA_OFFSET_OFFSET, 4, false));

    /** A parsed sidecar. */
    record Sidecar(Map<String, String> header, List<Map<String, String>> records)
    {
    }

    static Sidecar parse(final List<String> lines)
    {
        final Map<String, String> header = new LinkedHashMap<>();
        final List<Map<String, String>> records = new ArrayList<>();
        for (final String raw : lines)
        {
            final String line = raw.strip();
            if (line.isEmpty() || line.startsWith("#"))
            {
                continue;
            }
            if (line.startsWith("record "))
            {
                final Map<String, String> rec = new LinkedHashMap<>();
                for (final String kv : line.substring("record ".length()).trim().split("\\s+"))
                {
                    final int eq = kv.indexOf('=');
                    if (eq <= 0)
                    {
                        throw new IllegalArgumentException("sidecar record token \"" + kv + "\" is not key=value in: " + line);
                    }
                    rec.put(kv.substring(0, eq), kv.substring(eq + 1));
                }
                records.add(rec);
            }
            else
            {
                final int eq = line.indexOf('=');
                if (eq <= 0 || line.indexOf(' ') >= 0)
                {
                    throw new IllegalArgumentException("sidecar header line is not key=value: " + line);
                }
                if (header.put(line.substring(0, eq), line.substring(eq + 1)) != null)
                {
                    throw new IllegalArgumentException("sidecar header field repeated: " + line);
                }
            }
        }
        return new Sidecar(header, records);
    }

    static byte[] read(final Path path)
    {
        try
        {
            return Files.readAllBytes(path);
        }
        catch (final IOException ex)
        {
            throw new UncheckedIOException(ex);
        }
    }

    static ByteBuffer littleEndian(final byte[] bytes)
    {
        return ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
    }

    /** The header lines of a sidecar for a ring image. */
    static String headerLines(final ByteBuffer file)
    {
        final StringBuilder sb = new StringBuilder();
        for (final Field f : HEADER_FIELDS)
        {
            sb.append(f.name()).append('=').append(f.read(file)).append('\n');
        }
        return sb.toString();
    }
}
