package dev.pubsubshm.arrow;

import java.util.concurrent.atomic.AtomicBoolean;
import java.util.function.LongConsumer;

import org.apache.arrow.memory.ForeignAllocation;

/**
 * The body of one ring record, handed to Arrow as foreign memory. Arrow calls
 * {@link #release0()} once, when the last {@code ArrowBuf} that points into the body has been
 * released; that is when the record may go back to the ring (through {@code onRelease}).
 *
 * <p>The memory belongs to the ring mapping, which must stay mapped until this allocation
 * is released: the loader holds a reference on the {@link dev.pubsubshm.ring.RingFile} per
 * live allocation.
 */
final class RecordAllocation extends ForeignAllocation
{
    private final long position;
    private final LongConsumer onRelease;
    private final AtomicBoolean released = new AtomicBoolean();

    RecordAllocation(final long size, final long address, final long position, final LongConsumer onRelease)
    {
        super(size, address);
        this.position = position;
        this.onRelease = onRelease;
    }

    long position()
    {
        return position;
    }

    boolean isReleased()
    {
        return released.get();
    }

    @Override
    protected void release0()
    {
        if (!released.compareAndSet(false, true))
        {
            throw new IllegalStateException("ring record at position=" + position + " released twice");
        }
        onRelease.accept(position);
    }
}
