package dev.pubsubshm.bench.common;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Random;
import java.util.zip.CRC32C;

import org.junit.jupiter.api.Test;

class BenchCommonTest
{
    /** A payload as bench/synth makes it: random bytes, CRC32C of all but the last 4 in them (LE). */
    private static byte[] payload(final int n, final long seed)
    {
        final byte[] p = new byte[n];
        new Random(seed).nextBytes(p);
        final CRC32C crc = new CRC32C();
        crc.update(p, 0, n - 4);
        ByteBuffer.wrap(p).order(ByteOrder.LITTLE_ENDIAN).putInt(n - 4, (int)crc.getValue());
        return p;
    }

    @Test
    void payloadCheckAcceptsSynthPayloadsAndCatchesEveryFlippedByte()
    {
        final PayloadCheck check = new PayloadCheck();
        final byte[] p = payload(100, 1);
        final ByteBuffer direct = ByteBuffer.allocateDirect(120);
        direct.position(10);
        direct.put(p);
        assertTrue(check.verify(direct, 10, 110), "direct buffer at an offset");
        assertTrue(check.verify(ByteBuffer.wrap(p).order(ByteOrder.BIG_ENDIAN)), "byte order of the buffer does not matter");
        for (int i = 0; i < p.length; i++)
        {
            p[i] ^= 0x01;
            assertFalse(check.verify(ByteBuffer.wrap(p)), "flipped byte " + i);
            p[i] ^= 0x01;
        }
        assertTrue(check.verify(ByteBuffer.wrap(new byte[3])), "short payloads are zero");
        assertFalse(check.verify(ByteBuffer.wrap(new byte[] {0, 1, 0})), "short payloads must be zero");
        assertTrue(check.verify(ByteBuffer.wrap(new byte[0])));
    }

    @Test
    void histogramPercentilesAreLowerBucketBoundsWithinOneSixteenth()
    {
        final LatencyHistogram h = new LatencyHistogram();
        assertEquals(0, h.percentile(0.99));
        for (int v = 1; v <= 1000; v++)
        {
            h.record(v, 1);
        }
        assertEquals(1000, h.count());
        assertEquals(1000, h.max());
        final double p50 = h.percentile(0.5);
        assertTrue(p50 <= 500 && p50 >= 500 * 15.0 / 16, "p50 " + p50);
        final double p99 = h.percentile(0.99);
        assertTrue(p99 <= 990 && p99 >= 990 * 15.0 / 16, "p99 " + p99);
        final LatencyHistogram other = new LatencyHistogram();
        other.record(1_000_000, 1000);
        h.add(other);
        assertEquals(2000, h.count());
        assertTrue(h.percentile(0.99) >= 1_000_000 * 15.0 / 16);
        h.reset();
        assertEquals(0, h.count());
        assertEquals(0, h.max());
        h.record(-5, 1);
        assertEquals(0, h.percentile(1.0), "negative ages count as 0");
    }

    @Test
    void jsonLineEscapesStringsAndWritesNullForNaN()
    {
        final String s = new JsonLine().put("a", 1).put("b", 0.5).put("c", Double.NaN).put("d", "x\"y\\\n").put("e", new long[] {1, 2})
            .put("f", true).toString();
        assertEquals("{\"a\":1,\"b\":0.5,\"c\":null,\"d\":\"x\\\"y\\\\\\u000a\",\"e\":[1,2],\"f\":true}", s);
    }

    @Test
    void meterCountsAllocationOfOtherThreadsAfterTheyDie() throws Exception
    {
        try (JvmMeter meter = new JvmMeter())
        {
            meter.start();
            final Thread t = new Thread(() ->
            {
                long sink = 0;
                for (int i = 0; i < 1000; i++)
                {
                    sink += new byte[1024].length;
                }
                if (sink == 0)
                {
                    throw new AssertionError();
                }
                try
                {
                    // Outlive a sample: a thread that dies between two samples is not
                    // counted (documented), a sampled one is, after it died too.
                    Thread.sleep(3 * JvmMeter.SAMPLE_INTERVAL_MS);
                }
                catch (final InterruptedException ex)
                {
                    Thread.currentThread().interrupt();
                }
            });
            t.start();
            t.join();
            final JvmMeter.Reading r = meter.read();
            assertTrue(r.allocBytes() >= 1000 * 1024, "allocated " + r.allocBytes());
            assertTrue(r.elapsedNs() > 0 && r.cpuNs() >= 0);
        }
    }
}
