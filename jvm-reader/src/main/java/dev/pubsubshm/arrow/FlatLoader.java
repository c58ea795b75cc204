package dev.pubsubshm.arrow;

import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;

import org.apache.arrow.memory.ArrowBuf;
import org.apache.arrow.vector.FieldVector;
import org.apache.arrow.vector.TypeLayout;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.apache.arrow.vector.ipc.message.ArrowFieldNode;
import org.apache.arrow.vector.ipc.message.ArrowRecordBatch;

/**
 * Loads an {@link ArrowRecordBatch} into a {@link VectorSchemaRoot} like Arrow's
 * {@code VectorLoader}, with the vector tree and buffer counts computed once: VectorLoader
 * asks every vector for its {@code Field} on every batch, and map/list vectors build a new
 * Field (and lists) for each call. Each vector retains its buffers
 * ({@code loadFieldBuffers}), exactly as with VectorLoader, but the root's row count is left
 * to the caller ({@link VectorSchemaRoot#setRowCount}). Not thread-safe.
 */
final class FlatLoader
{
    private final FieldVector[] vectors;   // depth-first, the order of the IPC nodes
    private final int[] bufferCounts;
    private final ArrayList<ArrowBuf> own = new ArrayList<>(4);

    FlatLoader(final VectorSchemaRoot root)
    {
        final List<FieldVector> order = new ArrayList<>();
        for (final FieldVector v : root.getFieldVectors())
        {
            walk(v, order);
        }
        this.vectors = order.toArray(new FieldVector[0]);
        this.bufferCounts = new int[vectors.length];
        for (int i = 0; i < vectors.length; i++)
        {
            bufferCounts[i] = TypeLayout.getTypeBufferCount(vectors[i].getField().getType());
        }
    }

    private static void walk(final FieldVector v, final List<FieldVector> out)
    {
        out.add(v);
        for (final FieldVector c : v.getChildrenFromFields())
        {
            walk(c, out);
        }
    }

    void load(final ArrowRecordBatch batch)
    {
        final List<ArrowFieldNode> nodes = batch.getNodes();
        final List<ArrowBuf> buffers = batch.getBuffers();
        if (nodes.size() != vectors.length)
        {
            throw new IllegalArgumentException("batch has " + nodes.size() + " field nodes, the schema " + vectors.length);
        }
        int b = 0;
        for (int i = 0; i < vectors.length; i++)
        {
            own.clear();
            final int n = bufferCounts[i];
            if (b + n > buffers.size())
            {
                throw new IllegalArgumentException("batch has " + buffers.size() + " buffers, the schema needs more");
            }
            for (int k = 0; k < n; k++)
            {
                own.add(buffers.get(b++));
            }
            vectors[i].loadFieldBuffers(nodes.get(i), own);
        }
        if (b != buffers.size())
        {
            throw new IllegalArgumentException("batch has " + buffers.size() + " buffers, the schema " + b);
        }
        own.clear();
        // The caller sets the root's row count, after checking the vectors: setRowCount
        // derives a list's child count from its last offset and reallocates to fit.
    }
}
