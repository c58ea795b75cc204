package dev.pubsubshm.ring;

import java.nio.file.Path;

/** Creates OUTBOUND rings (and RESULTS rings, kind DATA) for the sink's tests in other packages, as pullerd would. */
public final class OutboundTestRings
{
    private OutboundTestRings()
    {
    }

    /**
     * Creates {@code dir/name} as an OUTBOUND ring.
     *
     * @param dir       a 0700 directory.
     * @param name      the file name.
     * @param partition the header's partition (pullerd: the writer id).
     * @param capacity  the ring capacity, a power of two.
     * @return the path.
     */
    public static Path createOutbound(final Path dir, final String name, final int partition, final long capacity)
    {
        final TestRings.Spec spec = TestRings.Spec.data(partition, capacity);
        spec.kind = RingDescriptor.KIND_OUTBOUND;
        return TestRings.create(dir, name, spec);
    }
}
