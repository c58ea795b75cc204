package dev.pubsubshm.ring;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.PosixFilePermissions;

import static dev.pubsubshm.ring.RingDescriptor.*;

/**
 * Test-side ring creation. In production pullerd (Go) creates every ring file; these helpers
 * write a header exactly as FORMAT.md section 2 says (into a temporary name, layout_version
 * last, then renamed into place with mode 0600), so Java tests and golden files need no Go.
 */
final class TestRings
{
    private TestRings()
    {
    }

    /** The header of a ring to create; mutable, with the values FORMAT.md prescribes by default. */
    static final class Spec
    {
        int kind = KIND_DATA;
        int headerLength = PAGE_SIZE;
        long capacity = 4096;
        long instanceId = 0x0102030405060708L;
        long createdUnixNs = 1_700_000_000_000_000_000L;
        int partition = 0;
        byte[] schema = new byte[0];
        int layoutVersion = LAYOUT_VERSION;

        static Spec data(final int partition, final long capacity)
        {
            final Spec spec = new Spec();
            spec.kind = KIND_DATA;
            spec.partition = partition;
            spec.capacity = capacity;
            return spec;
        }

        static Spec commit(final long capacity)
        {
            final Spec spec = new Spec();
            spec.kind = KIND_COMMIT;
            spec.partition = -1;
            spec.capacity = capacity;
            return spec;
        }
    }

    /**
     * The header bytes of {@code spec} (the first {@code header_length} bytes of the file).
     */
    static ByteBuffer header(final Spec spec)
    {
        final ByteBuffer b = ByteBuffer.allocate(spec.headerLength).order(ByteOrder.LITTLE_ENDIAN);
        b.putLong(MAGIC_OFFSET, MAGIC);
        b.putInt(RING_KIND_OFFSET, spec.kind);
        b.putInt(HEADER_LENGTH_OFFSET, spec.headerLength);
        b.putInt(RECORD_ALIGNMENT_OFFSET, RECORD_ALIGNMENT);
        b.putLong(CAPACITY_OFFSET, spec.capacity);
        b.putLong(FILE_LENGTH_OFFSET, spec.headerLength + spec.capacity);
        b.putLong(RING_INSTANCE_ID_OFFSET, spec.instanceId);
        b.putLong(CREATED_UNIX_NS_OFFSET, spec.createdUnixNs);
        b.putInt(PARTITION_OFFSET, spec.partition);
        b.putInt(MAX_RECORD_LENGTH_OFFSET, (int)maxRecordLengthFor(spec.kind, spec.capacity));
        b.putInt(SCHEMA_LENGTH_OFFSET, spec.schema.length);
        b.putInt(SCHEMA_OFFSET_OFFSET, SCHEMA_START);
        b.put(SCHEMA_START, spec.schema);
        b.putInt(LAYOUT_VERSION_OFFSET, spec.layoutVersion);
        return b;
    }

    /**
     * Creates {@code dir/name} from {@code spec}: header, zeroed ring area, mode 0600, written
     * to a temporary name with layout_version last and renamed into place.
     */
    static Path create(final Path dir, final String name, final Spec spec)
    {
        final Path path = dir.resolve(name);
        final Path tmp = dir.resolve("." + name + ".tmp-" + ProcessHandle.current().pid());
        final ByteBuffer header = header(spec);
        final int version = header.getInt(LAYOUT_VERSION_OFFSET);
        header.putInt(LAYOUT_VERSION_OFFSET, 0);
        try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE))
        {
            Files.setPosixFilePermissions(tmp, PosixFilePermissions.fromString("rw-------"));
            writeFully(ch, header, 0);
            writeFully(ch, ByteBuffer.allocate((int)spec.capacity), spec.headerLength);
            final ByteBuffer v = ByteBuffer.allocate(4).order(ByteOrder.LITTLE_ENDIAN).putInt(0, version);
            writeFully(ch, v, LAYOUT_VERSION_OFFSET);
        }
        catch (final IOException ex)
        {
            throw new UncheckedIOException(ex);
        }
        move(tmp, path);
        return path;
    }

    static Path createData(final Path dir, final int partition, final long capacity)
    {
        return create(dir, "data-" + partition + ".ring", Spec.data(partition, capacity));
    }

    static Path createCommit(final Path dir, final long capacity)
    {
        return create(dir, "commit.ring", Spec.commit(capacity));
    }

    static void pokeInt(final Path path, final long offset, final int value)
    {
        poke(path, offset, ByteBuffer.allocate(4).order(ByteOrder.LITTLE_ENDIAN).putInt(0, value));
    }

    static void pokeLong(final Path path, final long offset, final long value)
    {
        poke(path, offset, ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(0, value));
    }

    private static void poke(final Path path, final long offset, final ByteBuffer bytes)
    {
        try (FileChannel ch = FileChannel.open(path, StandardOpenOption.WRITE))
        {
            writeFully(ch, bytes, offset);
        }
        catch (final IOException ex)
        {
            throw new UncheckedIOException(ex);
        }
    }

    static void truncate(final Path path, final long size)
    {
        try (FileChannel ch = FileChannel.open(path, StandardOpenOption.WRITE))
        {
            ch.truncate(size);
        }
        catch (final IOException ex)
        {
            throw new UncheckedIOException(ex);
        }
    }

    /** Copies a file into {@code dir} with mode 0600 (git does not keep modes). */
    static Path copyPrivate(final Path source, final Path dir, final String name)
    {
        try
        {
            final Path target = dir.resolve(name);
            Files.copy(source, target, StandardCopyOption.REPLACE_EXISTING);
            Files.setPosixFilePermissions(target, PosixFilePermissions.fromString("rw-------"));
            return target;
        }
        catch (final IOException ex)
        {
            throw new UncheckedIOException(ex);
        }
    }

    private static void writeFully(final FileChannel ch, final ByteBuffer bytes, final long offset) throws IOException
    {
        final ByteBuffer b = bytes.duplicate().clear();
        long at = offset;
        while (b.hasRemaining())
        {
            at += ch.write(b, at);
        }
    }

    private static void move(final Path from, final Path to)
    {
        try
        {
            Files.move(from, to, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        }
        catch (final IOException ex)
        {
            throw new UncheckedIOException(ex);
        }
    }
}
