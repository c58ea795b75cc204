package dev.pubsubshm.arrow;

import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.Channels;
import java.util.List;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.LongConsumer;

import org.apache.arrow.flatbuf.Buffer;
import org.apache.arrow.flatbuf.FieldNode;
import org.apache.arrow.flatbuf.Message;
import org.apache.arrow.flatbuf.MessageHeader;
import org.apache.arrow.flatbuf.RecordBatch;
import org.apache.arrow.memory.ArrowBuf;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.vector.BufferLayout;
import org.apache.arrow.vector.FieldVector;
import org.apache.arrow.vector.TypeLayout;
import org.apache.arrow.vector.VectorLoader;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.apache.arrow.vector.ipc.ReadChannel;
import org.apache.arrow.vector.ipc.message.ArrowRecordBatch;
import org.apache.arrow.vector.ipc.message.MessageSerializer;
import org.apache.arrow.vector.types.pojo.Field;
import org.apache.arrow.vector.types.pojo.Schema;

import dev.pubsubshm.ring.DataRecord;
import dev.pubsubshm.ring.RingDescriptor;
import dev.pubsubshm.ring.RingFile;
import dev.pubsubshm.ring.RingFormatException;

/**
 * Loads the ARROW records of one DATA ring into a reusable {@link VectorSchemaRoot} without
 * copying: the record body is wrapped as foreign memory
 * ({@link BufferAllocator#wrapForeignAllocation}), sliced by the flatbuffer's buffer
 * offsets ({@link MessageSerializer#deserializeRecordBatch(RecordBatch, ArrowBuf)}) and
 * loaded into the vectors ({@link FlatLoader}: what {@link VectorLoader} does, minus the
 * {@code Field} objects VectorLoader builds for every map/list vector on every batch,
 * which were most of the JVM's per-batch heap allocation). Every data buffer of the loaded vectors points into the
 * shared mapping.
 *
 * <p><b>Release.</b> {@link #load} hands the record's lifetime to Arrow: when the last buffer
 * pointing into it is released (the next {@code load}, {@link #clear()}, {@link #close()},
 * or a transfer's owner closing), {@code onRelease} is called exactly once with the record's
 * position. Releases may come out of order. The ring mapping is retained for as long as any
 * record is live, so it is never unmapped under a buffer. A {@code load} that throws never
 * calls {@code onRelease}: the record stays the caller's, as it was before the call. An
 * exception thrown by {@code onRelease} (e.g. {@code DataRingReader.release} refusing a
 * record released twice) is not let through Arrow's release path, which it would leave
 * inconsistent; the loader's next {@link #load}, {@link #clear()} or {@link #close()}
 * throws it, wrapped in an {@link IllegalStateException}.
 *
 * <p><b>Checks.</b> Before any buffer is built, the flatbuffer is validated against the
 * record: message type, row count, node and buffer counts against the ring's schema, every
 * buffer inside the body, every validity bitmap long enough for its node (so Arrow never
 * allocates a replacement); with {@code validate} on, the loaded vectors' offsets are also
 * checked (VectorChecks) before the row count is set, so a corrupt record is a
 * {@link RingFormatException} and never an out-of-bounds read, a copy or a write.
 *
 * <p>Not thread-safe: one loader per reading thread.
 */
public final class RingBatchLoader implements AutoCloseable
{
    private final RingFile ring;
    private final BufferAllocator allocator;
    private final Schema schema;
    private final VectorSchemaRoot root;
    private final FlatLoader loader;
    private final int expectedNodes;
    private final int expectedBuffers;
    private final int[] topLevelNodes;      // node index of each top-level column
    private final int[] validityBuffers;    // per node: index of its validity buffer, -1 if its type has none
    private final FieldVector[] topLevel;   // root's vectors, cached (getFieldVectors() allocates)
    private final boolean validate;
    private final ByteBuffer metaView;
    private final Message message = new Message();
    private final RecordBatch recordBatch = new RecordBatch();
    private final Buffer bufferFb = new Buffer();
    private final FieldNode nodeFb = new FieldNode();
    private final AtomicReference<RuntimeException> releaseFailure = new AtomicReference<>();
    private volatile boolean closed;
    private volatile boolean draining; // closed with records still held: the last release closes the allocator

    /**
     * @param ring      the DATA ring; its header must carry the schema. The loader retains it
     *                  until {@link #close()} and while any loaded record is live.
     * @param parent    allocator to create this loader's child allocator from.
     * @param validate  also check the offsets of every loaded vector (cost: one pass over
     *                  the offsets buffers; recommended for data from another process).
     *                  Without it, corrupt offsets go undetected, and Arrow's
     *                  {@code setRowCount} may reallocate a vector (a copy) or write offsets
     *                  into the record to make them fit.
     */
    public RingBatchLoader(final RingFile ring, final BufferAllocator parent, final boolean validate)
    {
        if (ring.schemaLength() == 0)
        {
            throw RingFormatException.ring(RingFormatException.Kind.BAD_HEADER, ring.path(),
                "schema_length=0: a DATA ring read as Arrow must carry its schema in the header");
        }
        this.ring = ring.retain();
        try
        {
            this.schema = readSchema(ring);
        }
        catch (final RuntimeException ex)
        {
            ring.release();
            throw ex;
        }
        this.allocator = parent.newChildAllocator("ring:" + ring.path().getFileName(), 0, Long.MAX_VALUE);
        try
        {
            this.root = VectorSchemaRoot.create(schema, allocator);
        }
        catch (final RuntimeException ex)
        {
            // A schema message that parses but describes vectors Arrow cannot make (e.g. an
            // Int of bit width 3): a bad header like any other, not an Arrow exception.
            allocator.close();
            ring.release();
            throw new RingFormatException(RingFormatException.Kind.BAD_HEADER, String.valueOf(ring.path()), "schema",
                "the Arrow schema in the header of \"" + ring.path() + "\" cannot be loaded: " + ex.getMessage(), ex);
        }
        this.loader = new FlatLoader(root);
        this.expectedNodes = countNodes(schema.getFields());
        this.expectedBuffers = countBuffers(schema.getFields());
        final List<Field> fields = schema.getFields();
        this.topLevelNodes = new int[fields.size()];
        for (int i = 0, node = 0; i < fields.size(); i++)
        {
            topLevelNodes[i] = node;
            node += countNodes(List.of(fields.get(i)));
        }
        this.topLevel = root.getFieldVectors().toArray(new FieldVector[0]);
        this.validityBuffers = new int[expectedNodes];
        indexValidityBuffers(fields, validityBuffers, new int[2]);
        this.validate = validate;
        this.metaView = ring.duplicateBuffer().order(ByteOrder.LITTLE_ENDIAN);
    }

    private static Schema readSchema(final RingFile ring)
    {
        try
        {
            final byte[] bytes = ring.schemaBytes();
            // The encapsulated prefix (0xFFFFFFFF, i32 flatbuffer length) comes from another
            // process: Arrow allocates that length before reading, so check it first.
            final ByteBuffer prefix = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
            final long declared = bytes.length >= 8 ? prefix.getInt(4) : -1;
            if (bytes.length < 8 || prefix.getInt(0) != -1 || declared < 0 || declared > bytes.length - 8)
            {
                throw new RingFormatException(RingFormatException.Kind.BAD_HEADER, String.valueOf(ring.path()), "schema",
                    "bad Arrow schema message in the header of \"" + ring.path() + "\": its prefix must be 0xFFFFFFFF " +
                    "and a flatbuffer length within the schema_length=" + bytes.length + " bytes, found length " + declared,
                    null);
            }
            return MessageSerializer.deserializeSchema(new ReadChannel(Channels.newChannel(new ByteArrayInputStream(bytes))));
        }
        catch (final RingFormatException ex)
        {
            throw ex;
        }
        catch (final IOException | RuntimeException ex)
        {
            throw new RingFormatException(RingFormatException.Kind.BAD_HEADER, String.valueOf(ring.path()), "schema",
                "bad Arrow schema message in the header of \"" + ring.path() + "\": " + ex, ex);
        }
    }

    private static int countNodes(final List<Field> fields)
    {
        int n = 0;
        for (final Field f : fields)
        {
            n += 1 + countNodes(f.getChildren());
        }
        return n;
    }

    /** Depth first, like the IPC nodes and buffers: {@code at} = {next node, next buffer}. */
    private static void indexValidityBuffers(final List<Field> fields, final int[] out, final int[] at)
    {
        for (final Field f : fields)
        {
            final List<BufferLayout.BufferType> types = TypeLayout.getTypeLayout(f.getType()).getBufferTypes();
            out[at[0]++] = !types.isEmpty() && types.get(0) == BufferLayout.BufferType.VALIDITY ? at[1] : -1;
            at[1] += TypeLayout.getTypeBufferCount(f.getType());
            indexValidityBuffers(f.getChildren(), out, at);
        }
    }

    private static int countBuffers(final List<Field> fields)
    {
        int n = 0;
        for (final Field f : fields)
        {
            n += TypeLayout.getTypeBufferCount(f.getType()) + countBuffers(f.getChildren());
        }
        return n;
    }

    /** @return the schema stored in the ring header. */
    public Schema schema()
    {
        return schema;
    }

    /** @return the root the records are loaded into (reused by every {@link #load}). */
    public VectorSchemaRoot root()
    {
        return root;
    }

    /** @return this loader's allocator (its outstanding bytes are the live record bodies). */
    public BufferAllocator allocator()
    {
        return allocator;
    }

    /**
     * Loads an ARROW record into {@link #root()}, replacing (and releasing) what the root
     * held.
     *
     * @param record    a polled ARROW record of this loader's ring.
     * @param onRelease called once with {@code record.position()} when no buffer points into
     *                  the record any more (on whichever thread releases the last buffer);
     *                  never if this call throws. It should not throw: if it does, the
     *                  exception surfaces from the loader's next call (class doc).
     * @throws RingFormatException {@code CORRUPT_RECORD} if the flatbuffer does not describe
     *                             a valid batch of the schema inside the record's body.
     * @throws IllegalStateException if an {@code onRelease} callback threw since the last
     *                               call (the record is then not loaded).
     */
    public void load(final DataRecord record, final LongConsumer onRelease)
    {
        if (closed)
        {
            throw RingFormatException.ring(RingFormatException.Kind.CLOSED, ring.path(), "load after the loader was closed");
        }
        throwReleaseFailure();
        if (record.type() != RingDescriptor.TYPE_ARROW)
        {
            throw RingFormatException.record(ring.path(), record.position(), "type", record.type(), "an Arrow loader reads ARROW records only");
        }
        final RecordBatch rb = parseAndCheck(record);
        final long position = record.position();
        ring.retain(); // released with the allocation
        final ReleaseThenUnref release = new ReleaseThenUnref(onRelease);
        final RecordAllocation allocation = new RecordAllocation(record.bodyLength(), record.bodyAddress(), position, release);
        final ArrowBuf body;
        try
        {
            body = allocator.wrapForeignAllocation(allocation);
        }
        catch (final RuntimeException ex)
        {
            // Arrow did not take ownership: release0 will not run.
            ring.release();
            throw ex;
        }
        ArrowRecordBatch batch = null;
        try
        {
            batch = MessageSerializer.deserializeRecordBatch(rb, body); // slices body, then releases it
            loader.load(batch); // VectorLoader's work, without its per-batch Field objects; row count not set yet
        }
        catch (final IOException | RuntimeException ex)
        {
            release.disarm(); // a failed load does not release the record: it stays the caller's
            if (batch == null)
            {
                body.getReferenceManager().release();
            }
            root.clear();
            throw asCorrupt(record, "arrow record batch", ex);
        }
        finally
        {
            if (batch != null)
            {
                batch.close();
            }
        }
        if (validate)
        {
            try
            {
                for (final FieldVector v : topLevel)
                {
                    VectorChecks.check(v);
                }
            }
            catch (final RuntimeException ex)
            {
                release.disarm();
                root.clear();
                throw asCorrupt(record, "arrow vectors", ex);
            }
        }
        // Only now: setRowCount sets every vector's value count, and a list/map derives its
        // child's from its last offset; on unchecked offsets Arrow would "repair" the vectors
        // (reallocating, copying, writing offsets into the mapping) instead of failing.
        root.setRowCount(record.rowCount());
    }

    private RingFormatException asCorrupt(final DataRecord record, final String field, final Exception ex)
    {
        return new RingFormatException(RingFormatException.Kind.CORRUPT_RECORD, String.valueOf(ring.path()), field,
            "corrupt record at position=" + record.position() + " (batch_id=" + record.batchId() + ") field " + field + " in \"" + ring.path() +
            "\": does not describe a valid batch of the ring's schema: " + ex.getMessage(), ex);
    }

    private RecordBatch parseAndCheck(final DataRecord record)
    {
        final int metaStart = record.recordOffset() + record.metaOffset();
        final int metaEnd = metaStart + record.metaLength();
        final long bodyLength = record.bodyLength();
        final RecordBatch rb;
        try
        {
            // Flatbuffer offsets are relative to the buffer's position: no slice needed.
            metaView.limit(metaEnd).position(metaStart + 8);
            final Message msg = Message.getRootAsMessage(metaView, message);
            if (msg.headerType() != MessageHeader.RecordBatch)
            {
                throw RingFormatException.record(ring.path(), record.position(), "arrow message header_type", msg.headerType(), "must be RecordBatch (3)");
            }
            if (msg.bodyLength() != bodyLength)
            {
                throw RingFormatException.record(ring.path(), record.position(), "arrow bodyLength", msg.bodyLength(),
                    "must equal the record's body_length=" + bodyLength);
            }
            rb = (RecordBatch)msg.header(recordBatch);
            if (rb == null)
            {
                throw RingFormatException.record(ring.path(), record.position(), "arrow header", "null", "missing RecordBatch");
            }
            if (rb.length() != record.rowCount())
            {
                throw RingFormatException.record(ring.path(), record.position(), "arrow length", rb.length(), "must equal row_count=" + record.rowCount());
            }
            if (rb.compression() != null)
            {
                throw RingFormatException.record(ring.path(), record.position(), "arrow compression", "present", "rings carry uncompressed batches");
            }
            if (rb.nodesLength() != expectedNodes || rb.buffersLength() != expectedBuffers)
            {
                throw RingFormatException.record(ring.path(), record.position(), "arrow nodes/buffers", rb.nodesLength() + "/" + rb.buffersLength(),
                    "the ring's schema needs " + expectedNodes + "/" + expectedBuffers);
            }
            for (int i = 0; i < rb.buffersLength(); i++)
            {
                final Buffer b = rb.buffers(bufferFb, i);
                if (b.offset() < 0 || b.length() < 0 || b.offset() > bodyLength || b.length() > bodyLength - b.offset())
                {
                    throw RingFormatException.record(ring.path(), record.position(), "arrow buffer " + i, b.offset() + "+" + b.length(),
                        "must lie inside the body of " + bodyLength + " bytes");
                }
            }
            for (int i = 0; i < rb.nodesLength(); i++)
            {
                final FieldNode n = rb.nodes(nodeFb, i);
                if (n.length() < 0 || n.nullCount() < 0 || n.nullCount() > n.length() || n.length() > Integer.MAX_VALUE)
                {
                    throw RingFormatException.record(ring.path(), record.position(), "arrow node " + i, n.length() + "/" + n.nullCount(),
                        "needs 0 <= null_count <= length < 2^31");
                }
                // An empty bitmap would make Arrow allocate (and fill) a replacement of up
                // to 256 MiB; FORMAT.md section 5 has every bitmap written explicitly.
                final int vb = validityBuffers[i];
                if (vb >= 0 && rb.buffers(bufferFb, vb).length() < (n.length() + 7) / 8)
                {
                    throw RingFormatException.record(ring.path(), record.position(), "arrow buffer " + vb, rb.buffers(bufferFb, vb).length(),
                        "the validity bitmap of node " + i + " (length " + n.length() + ") needs " + (n.length() + 7) / 8 +
                        " bytes, written explicitly (FORMAT.md section 5)");
                }
            }
            for (int i = 0; i < topLevelNodes.length; i++)
            {
                final FieldNode n = rb.nodes(nodeFb, topLevelNodes[i]);
                if (n.length() != record.rowCount())
                {
                    throw RingFormatException.record(ring.path(), record.position(), "arrow node of " + schema.getFields().get(i).getName(),
                        n.length(), "a top-level column has row_count=" + record.rowCount() + " values");
                }
            }
        }
        catch (final RingFormatException ex)
        {
            throw ex;
        }
        catch (final RuntimeException ex) // flatbuffer offsets out of range
        {
            throw asCorrupt(record, "arrow flatbuffer", ex);
        }
        return rb;
    }

    /**
     * Releases the root's buffers (and so, once nothing else holds them, the record).
     *
     * @throws IllegalStateException if an {@code onRelease} callback threw since the last call.
     */
    public void clear()
    {
        root.clear();
        throwReleaseFailure();
    }

    private void throwReleaseFailure()
    {
        if (releaseFailure.get() == null)
        {
            return;
        }
        final RuntimeException failure = releaseFailure.getAndSet(null);
        if (failure != null)
        {
            throw new IllegalStateException("onRelease failed in \"" + ring.path() + "\": " + failure.getMessage(), failure);
        }
    }

    /**
     * Releases the root and closes the allocator. Records whose buffers were transferred
     * to another allocator stay live until those owners close them. Idempotent.
     *
     * <p>If buffers charged to this loader's allocator are still held elsewhere (retained
     * without a transfer), the allocator cannot close yet: closing it would make Arrow refuse
     * the holders' later releases ("allocator is closed"), so those records would never be
     * released and the ring never unmapped. It closes instead when the last of them is
     * released, and this method reports them.
     *
     * @throws IllegalStateException if buffers of this loader are still held elsewhere (the
     *                               message names the outstanding bytes), or if an
     *                               {@code onRelease} callback threw since the last call.
     */
    @Override
    public void close()
    {
        if (closed)
        {
            return;
        }
        closed = true;
        try
        {
            root.close();
            if (allocator.getAllocatedMemory() != 0)
            {
                draining = true;
                final long outstanding = allocator.getAllocatedMemory(); // again: a release may have raced
                if (outstanding != 0)
                {
                    throw new IllegalStateException("RingBatchLoader closed with " + outstanding + " bytes of records of \"" + ring.path() +
                        "\" still held elsewhere (leaked unless released): they go back to the ring, and the allocator and the mapping " +
                        "close, when their last buffer is released; " + allocator);
                }
            }
            allocator.close();
        }
        finally
        {
            ring.release();
        }
        throwReleaseFailure();
    }

    /**
     * After a {@link #close()} that found records held elsewhere: closes the allocator once
     * the last of them is released (Arrow has already dissociated its ledger and given back
     * its bytes when it calls release0). Idempotent, like the allocator's close.
     */
    private void closeAllocatorIfDrained()
    {
        if (draining && allocator.getAllocatedMemory() == 0)
        {
            allocator.close();
        }
    }

    /**
     * Runs inside Arrow's release of a record's last buffer: calls the user's callback (unless
     * the load failed), then drops the mapping reference the record held. Nothing may be
     * thrown back into Arrow.
     */
    private final class ReleaseThenUnref implements LongConsumer
    {
        private LongConsumer onRelease;

        ReleaseThenUnref(final LongConsumer onRelease)
        {
            this.onRelease = onRelease;
        }

        void disarm()
        {
            onRelease = null;
        }

        @Override
        public void accept(final long position)
        {
            try
            {
                if (onRelease != null)
                {
                    onRelease.accept(position);
                }
            }
            catch (final RuntimeException ex)
            {
                final RuntimeException first = releaseFailure.compareAndExchange(null, ex);
                if (first != null && first != ex)
                {
                    first.addSuppressed(ex);
                }
            }
            finally
            {
                try
                {
                    closeAllocatorIfDrained();
                }
                catch (final RuntimeException ex)
                {
                    releaseFailure.compareAndSet(null, ex);
                }
                finally
                {
                    ring.release();
                }
            }
        }
    }
}
