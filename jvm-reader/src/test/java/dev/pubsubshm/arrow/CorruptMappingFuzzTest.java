package dev.pubsubshm.arrow;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;

import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.FieldVector;
import org.apache.spark.sql.catalyst.InternalRow;
import org.apache.spark.sql.vectorized.ArrowColumnVector;
import org.apache.spark.sql.vectorized.ColumnVector;
import org.apache.spark.sql.vectorized.ColumnarBatch;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import dev.pubsubshm.ring.DataRecord;
import dev.pubsubshm.ring.DataRingReader;
import dev.pubsubshm.ring.DataRingScanner;
import dev.pubsubshm.ring.RingDescriptor;
import dev.pubsubshm.ring.RingFile;
import dev.pubsubshm.ring.RingFormatException;
import dev.pubsubshm.spark.MessageSchema;

import static dev.pubsubshm.ring.RingDescriptor.KIND_DATA;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * Corrupted mappings, the Java counterpart of the Go fuzz targets: the golden DATA ring that
 * Go wrote (three ARROW records) with random and adversarial bytes written into one region
 * at a time: the file header's fields, the producer/consumer identity and position lines,
 * the schema message, each record's 64-byte header, each record's Arrow metadata and each
 * record's body. Every image is mapped and read the way the Spark reader does
 * ({@link RingFile#open}, {@link RingBatchLoader}, {@link MessageSchema#check},
 * {@link DataRingScanner}, loads with validation, then every value through Spark's
 * {@link ArrowColumnVector}s) and the way the plain reader does ({@link DataRingReader}). The
 * only failures allowed are a {@link RingFormatException} with a kind and a message naming
 * the file, the Spark layer's schema mismatch naming the file, and (plain reader) a release
 * refused because the record's state already says RELEASED, naming the file; a value read out of bounds throws
 * (Arrow's bounds checks are on) and fails the test, a crash of the JVM fails the build.
 * Nothing stays allocated or mapped afterwards.
 *
 * <p>{@code -Dfuzz.rounds=N} (default 3000) and {@code -Dfuzz.seed=S} tune a run; the seed
 * is in every failure message.
 */
class CorruptMappingFuzzTest
{
    private static final int ROUNDS = Integer.getInteger("fuzz.rounds", 3000);
    private static final long SEED = Long.getLong("fuzz.seed", System.nanoTime());

    /** Values that break rules at their edges, written as i32 or i64 little-endian. */
    private static final long[] ADVERSARIAL = {0, 1, -1, 7, 8, 63, 64, 65, 4095, 4096, 4097, 1 << 16, (1 << 16) + 64,
        Integer.MAX_VALUE, Integer.MIN_VALUE, 0xFFFFFFFFL, Long.MAX_VALUE, Long.MIN_VALUE, -64, -4096};

    @TempDir
    Path dir;

    private record Region(String name, int from, int to)
    {
    }

    @Test
    void randomAndAdversarialBytesInEveryRegionAreAClearErrorNeverACrash() throws Exception
    {
        final byte[] golden = Files.readAllBytes(ArrowRings.GOLDEN_RING);
        final List<Region> regions = regions(golden);
        final Random random = new Random(SEED);
        final Map<String, Integer> outcomes = new TreeMap<>();
        final Map<String, int[]> perRegion = new LinkedHashMap<>();
        final Path path = dir.resolve("data-0.ring");
        try (RootAllocator allocator = new RootAllocator())
        {
            for (int round = 0; round < ROUNDS; round++)
            {
                final byte[] image = golden.clone();
                final Region region = regions.get(random.nextInt(regions.size()));
                final String how = mutate(image, region, random);
                Files.write(path, image);
                Files.setPosixFilePermissions(path, PosixFilePermissions.fromString("rw-------"));
                final String what = "seed " + SEED + " round " + round + ": " + how + " in " + region.name();
                final String outcome = exercise(path, allocator, what);
                outcomes.merge(outcome, 1, Integer::sum);
                perRegion.computeIfAbsent(region.name(), k -> new int[2])[outcome.startsWith("read") ? 0 : 1]++;
                assertEquals(0, allocator.getAllocatedMemory(), what + ": Arrow memory left allocated");
            }
        }
        System.out.println("CorruptMappingFuzzTest seed " + SEED + ", " + ROUNDS + " images: " + outcomes);
        // Every region was hit, and corruption was caught in each kind of region.
        for (final Region r : regions)
        {
            assertNotNull(perRegion.get(r.name()), "region " + r.name() + " never mutated in " + ROUNDS + " rounds");
        }
        assertTrue(outcomes.keySet().stream().anyMatch(o -> o.startsWith("refused at open")), "no header corruption refused: " + outcomes);
        assertTrue(outcomes.keySet().stream().anyMatch(o -> o.startsWith("refused at record")), "no record corruption refused: " + outcomes);
    }

    @Test
    void corruptCommitRingsAreAClearErrorNeverAWriteOutOfPlace() throws Exception
    {
        // The JVM writes into COMMIT rings: a corrupt header or slot must make it refuse or
        // report, never write outside the ring area.
        final byte[] golden = Files.readAllBytes(ArrowRings.GOLDEN_DIR.resolve("commit-java.ring"));
        final ByteBuffer g = ByteBuffer.wrap(golden).order(ByteOrder.LITTLE_ENDIAN);
        final int headerLength = g.getInt(RingDescriptor.HEADER_LENGTH_OFFSET);
        final List<Region> regions = List.of(new Region("header fields", 0, 64), new Region("producer identity", 64, 128),
            new Region("consumer identity", 128, 192), new Region("tail_position", 192, 200),
            new Region("head_position", 256, 264), new Region("schema length and offset", 512, 520),
            new Region("first slots", headerLength, headerLength + 4 * 64));
        final Random random = new Random(SEED);
        final Map<String, Integer> outcomes = new TreeMap<>();
        final Path path = dir.resolve("commit.ring");
        final int rounds = Math.max(1, ROUNDS / 3);
        for (int round = 0; round < rounds; round++)
        {
            final byte[] image = golden.clone();
            final Region region = regions.get(random.nextInt(regions.size()));
            final String what = "seed " + SEED + " round " + round + ": " + mutate(image, region, random) + " in COMMIT " +
                region.name();
            Files.write(path, image);
            Files.setPosixFilePermissions(path, PosixFilePermissions.fromString("rw-------"));
            final byte[] before = Files.readAllBytes(path);
            String outcome;
            try (RingFile ring = RingFile.open(path, RingFile.OpenOptions.defaults().kind(RingDescriptor.KIND_COMMIT)
                .notReadyTimeout(1, TimeUnit.MILLISECONDS)))
            {
                try (dev.pubsubshm.ring.CommitRingWriter w = new dev.pubsubshm.ring.CommitRingWriter(ring,
                    dev.pubsubshm.ring.CommitRingWriter.Config.defaults().fullTimeout(1, TimeUnit.MILLISECONDS)))
                {
                    for (int i = 1; i <= 3; i++)
                    {
                        w.commit(0, 42, i, i);
                    }
                    outcome = "written";
                }
                catch (final RingFormatException ex)
                {
                    assertClear(ex, path, what);
                    outcome = "refused at write: " + ex.kind();
                }
            }
            catch (final RingFormatException ex)
            {
                assertClear(ex, path, what);
                outcome = "refused at open: " + ex.kind();
            }
            catch (final RuntimeException | OutOfMemoryError ex)
            {
                outcome = fail(what + ": failed with something else than a RingFormatException", ex);
            }
            outcomes.merge(outcome, 1, Integer::sum);
            // Whatever happened, only the header's identity/position lines and the ring area
            // may have changed: never the header fields, never a byte past the file.
            final byte[] after = Files.readAllBytes(path);
            assertEquals(before.length, after.length, what + ": the file changed size");
            for (int i = 0; i < 64; i++)
            {
                assertEquals(before[i], after[i], what + ": header byte " + i + " written");
            }
        }
        System.out.println("CorruptMappingFuzzTest COMMIT seed " + SEED + ", " + rounds + " images: " + outcomes);
        assertTrue(outcomes.keySet().stream().anyMatch(o -> o.startsWith("refused")), "nothing refused: " + outcomes);
    }

    /** The regions of the golden image: header fields, identity lines, schema, and per record header, metadata, body. */
    private static List<Region> regions(final byte[] golden)
    {
        final ByteBuffer b = ByteBuffer.wrap(golden).order(ByteOrder.LITTLE_ENDIAN);
        final int headerLength = b.getInt(RingDescriptor.HEADER_LENGTH_OFFSET);
        final long capacity = b.getLong(RingDescriptor.CAPACITY_OFFSET);
        final long head = b.getLong(RingDescriptor.HEAD_POSITION_OFFSET);
        final long tail = b.getLong(RingDescriptor.TAIL_POSITION_OFFSET);
        final int schemaLength = b.getInt(RingDescriptor.SCHEMA_LENGTH_OFFSET);
        final List<Region> regions = new ArrayList<>();
        regions.add(new Region("header fields", 0, 64));
        regions.add(new Region("producer identity", 64, 128));
        regions.add(new Region("consumer identity", 128, 192));
        regions.add(new Region("tail_position", 192, 200));
        regions.add(new Region("head_position", 256, 264));
        regions.add(new Region("schema length and offset", 512, 520));
        regions.add(new Region("schema message", 1024, 1024 + schemaLength));
        int n = 0;
        for (long p = head; p < tail; n++)
        {
            final int at = (int)(headerLength + (p & (capacity - 1)));
            final int length = b.getInt(at + RingDescriptor.RECORD_LENGTH_OFFSET);
            final int metaLength = b.getInt(at + RingDescriptor.RECORD_META_LENGTH_OFFSET);
            final int bodyOffset = b.getInt(at + RingDescriptor.RECORD_BODY_OFFSET_OFFSET);
            regions.add(new Region("record " + n + " header", at, at + 64));
            regions.add(new Region("record " + n + " Arrow metadata", at + 64, at + 64 + metaLength));
            if (length > bodyOffset)
            {
                regions.add(new Region("record " + n + " body", at + bodyOffset, at + length));
            }
            p += (length + 63) & ~63L;
        }
        assertTrue(n >= 3, "the golden ring holds " + n + " records");
        return regions;
    }

    /** Writes random bytes, or an adversarial i32/i64, somewhere in the region; says what. */
    private static String mutate(final byte[] image, final Region r, final Random random)
    {
        final ByteBuffer b = ByteBuffer.wrap(image).order(ByteOrder.LITTLE_ENDIAN);
        final int span = r.to() - r.from();
        switch (random.nextInt(3))
        {
            case 0 ->
            {
                final int n = 1 + random.nextInt(Math.min(8, span));
                final int at = r.from() + random.nextInt(span - n + 1);
                for (int i = 0; i < n; i++)
                {
                    image[at + i] = (byte)random.nextInt(256);
                }
                return n + " random bytes at " + at;
            }
            case 1 ->
            {
                final int at = r.from() + (random.nextInt(Math.max(1, span / 4)) * 4);
                final long v = ADVERSARIAL[random.nextInt(ADVERSARIAL.length)];
                if (at + 4 > r.to())
                {
                    return "nothing";
                }
                b.putInt(at, (int)v);
                return "i32 " + (int)v + " at " + at;
            }
            default ->
            {
                final int at = r.from() + (random.nextInt(Math.max(1, span / 8)) * 8);
                final long v = ADVERSARIAL[random.nextInt(ADVERSARIAL.length)];
                if (at + 8 > r.to())
                {
                    return "nothing";
                }
                b.putLong(at, v);
                return "i64 " + v + " at " + at;
            }
        }
    }

    /** Reads the image both ways; returns how it ended. */
    private static String exercise(final Path path, final RootAllocator allocator, final String what)
    {
        final RingFile ring;
        try
        {
            ring = RingFile.open(path, RingFile.OpenOptions.defaults().kind(KIND_DATA).notReadyTimeout(1, TimeUnit.MILLISECONDS));
        }
        catch (final RingFormatException ex)
        {
            assertClear(ex, path, what);
            return "refused at open: " + ex.kind();
        }
        catch (final RuntimeException | OutOfMemoryError ex)
        {
            return fail(what + ": opening failed with something else than a RingFormatException", ex);
        }
        String outcome;
        try
        {
            outcome = viaScanner(ring, allocator, path, what);
            if (outcome.startsWith("read"))
            {
                outcome = viaReader(ring, allocator, path, what);
            }
        }
        finally
        {
            ring.close();
        }
        assertEquals(0, ring.refCount(), what + ": a mapping reference left");
        return outcome;
    }

    /** The Spark path: scanner, validating loader, every value through ArrowColumnVector. */
    private static String viaScanner(final RingFile ring, final RootAllocator allocator, final Path path, final String what)
    {
        RingBatchLoader loader = null;
        try (DataRingScanner scanner = new DataRingScanner(ring))
        {
            loader = new RingBatchLoader(ring, allocator, true);
            try
            {
                MessageSchema.check(loader.schema(), path); // as RingPartitionReader does
            }
            catch (final IllegalStateException ex)
            {
                assertTrue(ex.getMessage().contains("does not carry the message schema") &&
                    ex.getMessage().contains(path.toString()), what + ": unclear schema error: " + ex.getMessage());
                return "refused at schema";
            }
            scanner.seekToHead();
            final DataRecord record = new DataRecord();
            for (int i = 0; i < 16; i++)
            {
                final DataRingScanner.Status status = scanner.next(record);
                if (status != DataRingScanner.Status.RECORD)
                {
                    break;
                }
                if (record.type() != RingDescriptor.TYPE_ARROW)
                {
                    continue;
                }
                loader.load(record, position -> { });
                readEverything(loader, what);
                loader.clear();
            }
            return "read";
        }
        catch (final RingFormatException ex)
        {
            assertClear(ex, path, what);
            return "refused at record: " + ex.kind();
        }
        catch (final RuntimeException | AssertionError | OutOfMemoryError ex)
        {
            return fail(what + ": the Spark path failed with something else than a RingFormatException", ex);
        }
        finally
        {
            if (loader != null)
            {
                loader.close();
            }
        }
    }

    /** The plain reader: poll, load, release. */
    private static String viaReader(final RingFile ring, final RootAllocator allocator, final Path path, final String what)
    {
        RingBatchLoader loader = null;
        try (DataRingReader reader = new DataRingReader(ring))
        {
            loader = new RingBatchLoader(ring, allocator, true);
            final DataRecord record = new DataRecord();
            for (int i = 0; i < 16 && reader.poll(record); i++)
            {
                if (record.type() != RingDescriptor.TYPE_ARROW)
                {
                    reader.release(record.position());
                    continue;
                }
                loader.load(record, reader::release);
                readEverything(loader, what);
            }
            loader.clear();
            return "read";
        }
        catch (final RingFormatException ex)
        {
            assertClear(ex, path, what);
            return "refused at record: " + ex.kind();
        }
        catch (final IllegalStateException ex)
        {
            // A RELEASED bit already set in a record's state: indistinguishable from a record
            // a previous reader released out of order; the release says so.
            // (Once such a record is passed, head may pass it too, and releasing it later is
            // refused as "not a polled, unreleased record".)
            final Throwable c = ex.getCause() != null ? ex.getCause() : ex;
            final String m = String.valueOf(c.getMessage());
            if (!(m.contains("released twice") || m.contains("not a polled, unreleased record")) ||
                !m.contains(path.toString()))
            {
                return fail(what + ": the plain reader failed with something else than a RingFormatException", ex);
            }
            return "refused at release";
        }
        catch (final RuntimeException | AssertionError | OutOfMemoryError ex)
        {
            return fail(what + ": the plain reader failed with something else than a RingFormatException", ex);
        }
        finally
        {
            if (loader != null)
            {
                loader.close();
            }
        }
    }

    /** Every value of every column, through Arrow (bounds-checked) and Spark's column vectors. */
    private static void readEverything(final RingBatchLoader loader, final String what)
    {
        final List<FieldVector> vectors = loader.root().getFieldVectors();
        final int rows = loader.root().getRowCount();
        for (final FieldVector v : vectors)
        {
            for (int i = 0; i < rows; i++)
            {
                v.getObject(i);
            }
        }
        final ColumnVector[] columns = new ColumnVector[vectors.size()];
        for (int i = 0; i < columns.length; i++)
        {
            columns[i] = new ArrowColumnVector(vectors.get(i));
        }
        final ColumnarBatch batch = new ColumnarBatch(columns, rows);
        final java.util.Iterator<InternalRow> it = batch.rowIterator();
        int n = 0;
        while (it.hasNext())
        {
            final InternalRow row = it.next();
            if (!row.isNullAt(0))
            {
                row.getUTF8String(0).toString();
            }
            row.getLong(1);
            row.getBinary(2);
            final org.apache.spark.sql.catalyst.util.MapData m = row.getMap(3);
            for (int k = 0; k < m.numElements(); k++)
            {
                m.keyArray().getUTF8String(k).toString();
                if (!m.valueArray().isNullAt(k))
                {
                    m.valueArray().getUTF8String(k).toString();
                }
            }
            if (!row.isNullAt(4))
            {
                row.getUTF8String(4).toString();
            }
            if (!row.isNullAt(5))
            {
                row.getInt(5);
            }
            n++;
        }
        assertEquals(rows, n, what);
    }

    private static void assertClear(final RingFormatException ex, final Path path, final String what)
    {
        assertNotNull(ex.kind(), what + ": no kind: " + ex.getMessage());
        final String m = ex.getMessage();
        assertNotNull(m, what);
        assertFalse(m.isBlank(), what);
        assertTrue(m.contains(path.getFileName().toString()), what + ": the error does not name the file: " + m);
    }
}
