package dev.pubsubshm.bench.common;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.zip.CRC32C;

/**
 * The check every bench consumer applies to every payload the synthetic source
 * (bench/synth) wrote: for a payload of n >= 4 bytes the last 4 bytes are the
 * little-endian CRC32C (Castagnoli) of the n - 4 bytes before them; shorter payloads are
 * all zero. Reads every byte once. Allocates nothing. Not thread-safe (it keeps one CRC32C):
 * one per thread.
 */
public final class PayloadCheck
{
    private final CRC32C crc = new CRC32C();

    /**
     * Checks the payload between {@code b}'s position and limit. Moves the position and
     * limit of {@code b}; its byte order does not matter.
     *
     * @return true if the payload carries a valid checksum
     */
    public boolean verify(final ByteBuffer b)
    {
        final int start = b.position();
        final int end = b.limit();
        final int n = end - start;
        if (n < 4)
        {
            for (int i = start; i < end; i++)
            {
                if (b.get(i) != 0)
                {
                    return false;
                }
            }
            return true;
        }
        final int expected = b.order() == ByteOrder.LITTLE_ENDIAN ? b.getInt(end - 4) : Integer.reverseBytes(b.getInt(end - 4));
        crc.reset();
        b.limit(end - 4);
        crc.update(b);
        b.limit(end);
        return (int)crc.getValue() == expected;
    }

    /**
     * Checks the payload at {@code [start, end)} of {@code view} (absolute indexes).
     * Moves the position and limit of {@code view}.
     */
    public boolean verify(final ByteBuffer view, final int start, final int end)
    {
        view.limit(end).position(start);
        return verify(view);
    }
}
