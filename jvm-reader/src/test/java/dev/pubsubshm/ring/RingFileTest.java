package dev.pubsubshm.ring;

import dev.pubsubshm.ring.RingFormatException.Kind;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.api.function.Executable;

import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static dev.pubsubshm.ring.RingDescriptor.*;
import static org.junit.jupiter.api.Assertions.*;

class RingFileTest
{
    @TempDir
    Path dir;

    private static RingFormatException expect(final Kind kind, final Executable open)
    {
        final RingFormatException ex = assertThrows(RingFormatException.class, open);
        assertEquals(kind, ex.kind(), ex.getMessage());
        return ex;
    }

    private static RingFormatException expectHeader(final Kind kind, final String field, final Path path, final Executable open)
    {
        final RingFormatException ex = expect(kind, open);
        assertEquals(field, ex.field(), ex.getMessage());
        assertTrue(ex.getMessage().contains("field " + field + "="), ex.getMessage());
        assertTrue(ex.getMessage().contains("\"" + path + "\""), ex.getMessage());
        return ex;
    }

    private static RingFile openNow(final Path path)
    {
        return RingFile.open(path, RingFile.OpenOptions.defaults().notReadyTimeout(0, TimeUnit.NANOSECONDS));
    }

    @Test
    void opensAValidDataRingAndExposesEveryHeaderValue()
    {
        final TestRings.Spec spec = TestRings.Spec.data(7, 8192);
        spec.instanceId = 0xAABBCCDDEEFF0011L;
        spec.createdUnixNs = 1_234_567_890L;
        spec.schema = new byte[] {1, 2, 3, 4, 5};
        final Path path = TestRings.create(dir, "data-7.ring", spec);
        try (RingFile ring = RingFile.open(path, RingFile.OpenOptions.defaults().kind(KIND_DATA).partition(7)))
        {
            assertEquals(path, ring.path());
            assertEquals(LAYOUT_VERSION, ring.layoutVersion());
            assertEquals(KIND_DATA, ring.kind());
            assertEquals(4096, ring.headerLength());
            assertEquals(8192, ring.capacity());
            assertEquals(4096 + 8192, ring.fileLength());
            assertEquals(0xAABBCCDDEEFF0011L, ring.instanceId());
            assertEquals(1_234_567_890L, ring.createdUnixNs());
            assertEquals(7, ring.partition());
            assertEquals(4096, ring.maxRecordLength());
            assertEquals(5, ring.schemaLength());
            assertArrayEquals(new byte[] {1, 2, 3, 4, 5}, ring.schemaBytes());
            final ByteBuffer schema = ring.schema();
            assertEquals(5, schema.remaining());
            assertEquals(3, schema.get(2));
            assertTrue(schema.isReadOnly());
            assertNotEquals(0, ring.address());
            assertEquals(0, ring.address() % 4096, "a mapping is page aligned");
            assertEquals(org.apache.arrow.memory.util.MemoryUtil.getByteBufferAddress(ring.duplicateBuffer()),
                ring.address(), "the address Arrow Java sees for the mapping");
            assertEquals(4096 + 100, ring.offsetOf(8192 * 3 + 100));
            assertEquals(0, ring.tailPosition());
            assertEquals(0, ring.headPosition());
        }
    }

    @Test
    void theMessageNamesFieldValueFileAndRule()
    {
        final TestRings.Spec spec = TestRings.Spec.data(0, 4096);
        spec.capacity = 4095;
        final Path path = TestRings.create(dir, "data-0.ring", spec);
        TestRings.truncate(path, 4096 + 4096);
        final RingFormatException ex = expectHeader(Kind.BAD_HEADER, "capacity", path, () -> openNow(path));
        assertEquals("bad header field capacity=4095 in \"" + path + "\": must be a power of two in [4096, 1073741824]",
            ex.getMessage());
        assertEquals(path.toString(), ex.path());
    }

    @Test
    void wrongMagicIsBadMagic()
    {
        final Path path = TestRings.createData(dir, 0, 4096);
        TestRings.pokeLong(path, MAGIC_OFFSET, 0x1122334455667788L);
        final RingFormatException ex = expectHeader(Kind.BAD_MAGIC, "magic", path, () -> openNow(path));
        assertTrue(ex.getMessage().contains("magic=0x1122334455667788"), ex.getMessage());
    }

    @Test
    void unknownMajorVersionIsRefusedAndAHigherMinorAccepted()
    {
        final Path path = TestRings.createData(dir, 0, 4096);
        TestRings.pokeInt(path, LAYOUT_VERSION_OFFSET, 2 << 16);
        final RingFormatException ex = expectHeader(Kind.VERSION, "layout_version", path, () -> openNow(path));
        assertTrue(ex.getMessage().contains("layout_version=2.0"), ex.getMessage());

        TestRings.pokeInt(path, LAYOUT_VERSION_OFFSET, 1 << 16 | 7);
        try (RingFile ring = openNow(path))
        {
            assertEquals(1 << 16 | 7, ring.layoutVersion());
        }
    }

    @Test
    void versionZeroIsNotReadyAfterTheTimeout()
    {
        final Path path = TestRings.createData(dir, 0, 4096);
        TestRings.pokeInt(path, LAYOUT_VERSION_OFFSET, 0);
        expectHeader(Kind.NOT_READY, "layout_version", path, () -> openNow(path));

        final long start = System.nanoTime();
        expect(Kind.NOT_READY, () -> RingFile.open(path,
            RingFile.OpenOptions.defaults().notReadyTimeout(100, TimeUnit.MILLISECONDS)));
        assertTrue(System.nanoTime() - start >= TimeUnit.MILLISECONDS.toNanos(100), "waited the timeout");
    }

    @Test
    void versionZeroIsWaitedForUntilTheCreatorStoresIt() throws Exception
    {
        final Path path = TestRings.createData(dir, 0, 4096);
        TestRings.pokeInt(path, LAYOUT_VERSION_OFFSET, 0);
        final CompletableFuture<Void> creator = CompletableFuture.runAsync(() ->
        {
            sleep(100);
            TestRings.pokeInt(path, LAYOUT_VERSION_OFFSET, LAYOUT_VERSION);
        });
        try (RingFile ring = RingFile.open(path, RingFile.OpenOptions.defaults().notReadyTimeout(5, TimeUnit.SECONDS)))
        {
            assertEquals(LAYOUT_VERSION, ring.layoutVersion());
        }
        creator.get();
    }

    @Test
    void aMissingFileIsNotReadyAndWaitedFor() throws Exception
    {
        final Path path = dir.resolve("data-0.ring");
        expect(Kind.NOT_READY, () -> openNow(path));
        final CompletableFuture<Void> creator = CompletableFuture.runAsync(() ->
        {
            sleep(100);
            TestRings.createData(dir, 0, 4096);
        });
        try (RingFile ring = RingFile.open(path, RingFile.OpenOptions.defaults().notReadyTimeout(5, TimeUnit.SECONDS)))
        {
            assertEquals(0, ring.partition());
        }
        creator.get();
    }

    @Test
    void truncatedFilesAreRefused()
    {
        final Path path = TestRings.createData(dir, 0, 8192);
        TestRings.truncate(path, 4096 + 5000);
        final RingFormatException ex = expectHeader(Kind.TRUNCATED, "file_length", path, () -> openNow(path));
        assertTrue(ex.getMessage().contains("file_length=12288"), ex.getMessage());
        assertTrue(ex.getMessage().contains("9096"), ex.getMessage());

        TestRings.truncate(path, 100);
        expectHeader(Kind.TRUNCATED, "file_size", path, () -> openNow(path));
        TestRings.truncate(path, 0);
        expectHeader(Kind.TRUNCATED, "file_size", path, () -> openNow(path));
    }

    @Test
    void aFileLongerThanItsHeaderSaysIsRefused() throws Exception
    {
        final Path path = TestRings.createData(dir, 0, 4096);
        Files.write(path, new byte[64], java.nio.file.StandardOpenOption.APPEND);
        expectHeader(Kind.BAD_HEADER, "file_length", path, () -> openNow(path));
    }

    @Test
    void everyHeaderFieldIsValidated()
    {
        record Case(String field, int offset, long value, boolean isLong, String expectInMessage) {}
        final Case[] cases = {
            new Case("ring_kind", RING_KIND_OFFSET, 9, false, "ring_kind=9"),
            new Case("header_length", HEADER_LENGTH_OFFSET, 100, false, "header_length=100"),
            new Case("header_length", HEADER_LENGTH_OFFSET, 0, false, "header_length=0"),
            new Case("record_alignment", RECORD_ALIGNMENT_OFFSET, 32, false, "must be 64"),
            new Case("capacity", CAPACITY_OFFSET, 4095, true, "power of two"),
            new Case("capacity", CAPACITY_OFFSET, 2048, true, "power of two"),
            new Case("capacity", CAPACITY_OFFSET, 1L << 31, true, "power of two"),
            new Case("capacity", CAPACITY_OFFSET, -4096, true, "capacity=18446744073709547520"),
            new Case("file_length", FILE_LENGTH_OFFSET, 4096, true, "header_length + capacity = 8192"),
            new Case("ring_instance_id", RING_INSTANCE_ID_OFFSET, 0, true, "non-zero"),
            new Case("partition", PARTITION_OFFSET, -1, false, "must be >= 0 for a DATA ring"),
            new Case("max_record_length", MAX_RECORD_LENGTH_OFFSET, 4096, false, "must be 2048"),
            new Case("schema_offset", SCHEMA_OFFSET_OFFSET, 512, false, "must be 1024"),
            new Case("schema_length", SCHEMA_LENGTH_OFFSET, 3073, false, "header_length 4096"),
            new Case("head_position/tail_position", TAIL_POSITION_OFFSET, 4160, true, "0/4160"),
            new Case("head_position/tail_position", TAIL_POSITION_OFFSET, 65, true, "multiples of 64"),
            new Case("head_position/tail_position", HEAD_POSITION_OFFSET, 128, true, "128/0"),
        };
        for (final Case c : cases)
        {
            final Path path = TestRings.createData(dir, 0, 4096);
            if (c.isLong)
            {
                TestRings.pokeLong(path, c.offset, c.value);
            }
            else
            {
                TestRings.pokeInt(path, c.offset, (int)c.value);
            }
            final RingFormatException ex = expectHeader(Kind.BAD_HEADER, c.field, path, () -> openNow(path));
            assertTrue(ex.getMessage().contains(c.expectInMessage), c.field + ": " + ex.getMessage());
        }
    }

    @Test
    void commitRingRules()
    {
        final Path path = TestRings.createCommit(dir, 4096);
        try (RingFile ring = RingFile.open(path, RingFile.OpenOptions.defaults().kind(KIND_COMMIT)))
        {
            assertEquals(-1, ring.partition());
            assertEquals(64, ring.maxRecordLength());
        }
        expectHeader(Kind.BAD_HEADER, "ring_kind", path,
            () -> RingFile.open(path, RingFile.OpenOptions.defaults().kind(KIND_DATA)));
        TestRings.pokeInt(path, PARTITION_OFFSET, 0);
        expectHeader(Kind.BAD_HEADER, "partition", path, () -> openNow(path));
        TestRings.pokeInt(path, PARTITION_OFFSET, -1);
        TestRings.pokeInt(path, MAX_RECORD_LENGTH_OFFSET, 2048);
        expectHeader(Kind.BAD_HEADER, "max_record_length", path, () -> openNow(path));
        TestRings.pokeInt(path, MAX_RECORD_LENGTH_OFFSET, 64);
        TestRings.pokeInt(path, SCHEMA_LENGTH_OFFSET, 8);
        expectHeader(Kind.BAD_HEADER, "schema_length", path, () -> openNow(path));
    }

    @Test
    void anUnexpectedPartitionIsRefused()
    {
        final Path path = TestRings.createData(dir, 2, 4096);
        final RingFormatException ex = expectHeader(Kind.BAD_HEADER, "partition", path,
            () -> RingFile.open(path, RingFile.OpenOptions.defaults().partition(3)));
        assertTrue(ex.getMessage().contains("partition=2"), ex.getMessage());
    }

    @Test
    void groupOrWorldAccessibleFilesAndDirectoriesAreRefused() throws Exception
    {
        final Path path = TestRings.createData(dir, 0, 4096);
        Files.setPosixFilePermissions(path, PosixFilePermissions.fromString("rw-r--r--"));
        RingFormatException ex = expect(Kind.PERMISSION, () -> openNow(path));
        assertTrue(ex.getMessage().contains("mode 0644"), ex.getMessage());

        Files.setPosixFilePermissions(path, PosixFilePermissions.fromString("rw-------"));
        Files.setPosixFilePermissions(dir, PosixFilePermissions.fromString("rwxr-x---"));
        try
        {
            ex = expect(Kind.PERMISSION, () -> openNow(path));
            assertTrue(ex.getMessage().contains("mode 0750"), ex.getMessage());
        }
        finally
        {
            Files.setPosixFilePermissions(dir, PosixFilePermissions.fromString("rwx------"));
        }
        openNow(path).close();
    }

    @Test
    void aFileOwnedByAnotherUserIsRefused() throws Exception
    {
        final int euid = (Integer)Files.getAttribute(Path.of("/proc/self"), "unix:uid");
        final Path path;
        if (euid == 0)
        {
            path = TestRings.createData(dir, 0, 4096);
            Files.setAttribute(path, "unix:uid", 54321);
        }
        else
        {
            path = Path.of("/etc/hostname"); // owned by root
        }
        final RingFormatException ex = expect(Kind.PERMISSION, () -> openNow(path));
        assertTrue(ex.getMessage().contains("owned by uid"), ex.getMessage());
    }

    @Test
    void theMappingLivesUntilTheLastReferenceIsReleased()
    {
        final Path path = TestRings.createData(dir, 0, 4096);
        final RingFile ring = openNow(path);
        assertEquals(1, ring.refCount());
        ring.retain();
        assertEquals(2, ring.refCount());
        ring.close();
        ring.close(); // idempotent: the owner's reference is dropped once
        assertEquals(1, ring.refCount());
        ring.putLongRelease(HEAD_POSITION_OFFSET, 0); // still mapped
        assertEquals(KIND_DATA, ring.getInt(RING_KIND_OFFSET));
        assertTrue(ring.tryRetain());
        ring.release();
        ring.release();
        assertEquals(0, ring.refCount());
        assertFalse(ring.tryRetain());
        expect(Kind.CLOSED, ring::retain);
        assertThrows(IllegalStateException.class, ring::release);
    }

    @Test
    void twoMappingsOfOneFileShareMemory()
    {
        final Path path = TestRings.createData(dir, 0, 4096);
        try (RingFile a = openNow(path); RingFile b = openNow(path))
        {
            assertTrue(a.compareAndSetLong(TAIL_POSITION_OFFSET, 0, 640));
            assertEquals(640, b.tailPosition());
            assertEquals(0, b.getAndBitwiseOrInt(a.offsetOf(64) + RECORD_STATE_OFFSET, STATE_RELEASED));
            assertEquals(STATE_RELEASED, a.getIntAcquire(a.offsetOf(64) + RECORD_STATE_OFFSET));
        }
    }

    @Test
    void peerStateFollowsPidStartTicksHeartbeatAndClosed() throws Exception
    {
        final Path path = TestRings.createData(dir, 0, 4096);
        try (RingFile ring = openNow(path))
        {
            final long now = System.nanoTime();
            final long timeout = TimeUnit.SECONDS.toNanos(10);
            assertEquals(PeerState.NOT_ATTACHED, ring.peerState(RingFile.Side.PRODUCER, timeout, now));
            final ProcessIdentity self = ProcessIdentity.self();
            ring.attach(RingFile.Side.PRODUCER, self, now);
            assertEquals(PeerState.ALIVE, ring.peerState(RingFile.Side.PRODUCER, timeout, now));
            assertEquals(PeerState.DEAD, ring.peerState(RingFile.Side.PRODUCER, timeout, now + timeout + 1),
                "stale heartbeat");
            ring.attach(RingFile.Side.PRODUCER, new ProcessIdentity(self.pid(), self.startTicks() + 1), now);
            assertEquals(PeerState.DEAD, ring.peerState(RingFile.Side.PRODUCER, timeout, now), "pid reused");
            final Process exited = new ProcessBuilder("true").start();
            exited.waitFor();
            ring.attach(RingFile.Side.PRODUCER, new ProcessIdentity(exited.pid(), 0), now);
            assertEquals(PeerState.DEAD, ring.peerState(RingFile.Side.PRODUCER, timeout, now), "pid gone");
            ring.attach(RingFile.Side.PRODUCER, self, now);
            ring.markClosed(RingFile.Side.PRODUCER);
            assertEquals(PeerState.CLOSED, ring.peerState(RingFile.Side.PRODUCER, timeout, now));
            assertEquals(self.pid(), ring.getLong(PRODUCER_PID_OFFSET));
            assertEquals(self.startTicks(), ring.getLong(PRODUCER_START_TICKS_OFFSET));
            assertEquals(now, ring.getLong(PRODUCER_HEARTBEAT_NS_OFFSET));
            assertEquals(1, ring.getLong(PRODUCER_CLOSED_OFFSET));
            assertEquals(0, ring.getLong(CONSUMER_PID_OFFSET), "the other side is untouched");
        }
    }

    private static void sleep(final long ms)
    {
        try
        {
            Thread.sleep(ms);
        }
        catch (final InterruptedException ex)
        {
            Thread.currentThread().interrupt();
            throw new IllegalStateException(ex);
        }
    }
}
