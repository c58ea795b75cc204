package dev.pubsubshm.arrow;

import org.apache.arrow.memory.ArrowBuf;
import org.apache.arrow.vector.BaseFixedWidthVector;
import org.apache.arrow.vector.BaseVariableWidthVector;
import org.apache.arrow.vector.FieldVector;
import org.apache.arrow.vector.complex.BaseRepeatedValueVector;
import org.apache.arrow.vector.complex.StructVector;

/**
 * Bounds checks of loaded vectors, so that data written by another process can never make
 * a reader touch memory outside its buffers: validity bitmaps and fixed-width values long
 * enough, offsets starting at 0 or more, non-decreasing, and ending inside the data buffer
 * (or the child vector); and no null in a non-nullable column. Allocates nothing. (Arrow Java's ValueVectorUtility.validateFull
 * rejects valid map vectors in 18.x, so the project checks the layouts it uses itself.)
 */
final class VectorChecks
{
    private VectorChecks()
    {
    }

    /**
     * @throws IllegalArgumentException naming the vector and the broken rule.
     */
    static void check(final FieldVector v)
    {
        final int n = v.getValueCount();
        final ArrowBuf validity = v.getValidityBuffer();
        if (validity != null && validity.capacity() < (n + 7L) / 8)
        {
            throw fail(v, "validity buffer of " + validity.capacity() + " bytes for " + n + " values");
        }
        if (!v.getField().isNullable() && n > 0)
        {
            // Spark reads a non-nullable column without asking isNullAt: a null there would
            // fail a task deep inside Arrow ("Value at index is null") instead of here.
            final int nulls = v.getNullCount();
            if (nulls != 0)
            {
                throw fail(v, nulls + " null values in a non-nullable column");
            }
        }
        if (v instanceof BaseFixedWidthVector f)
        {
            if (f.getDataBuffer().capacity() < (long)n * f.getTypeWidth())
            {
                throw fail(v, "data buffer of " + f.getDataBuffer().capacity() + " bytes for " + n + " values of " + f.getTypeWidth() + " bytes");
            }
        }
        else if (v instanceof BaseVariableWidthVector w)
        {
            checkOffsets(v, w.getOffsetBuffer(), n, w.getDataBuffer().capacity());
        }
        else if (v instanceof BaseRepeatedValueVector r)
        {
            final FieldVector child = (FieldVector)r.getDataVector();
            checkOffsets(v, r.getOffsetBuffer(), n, child.getValueCount());
            check(child);
        }
        else if (v instanceof StructVector s)
        {
            for (int i = 0; i < s.size(); i++)
            {
                final FieldVector c = (FieldVector)s.getChildByOrdinal(i);
                if (c.getValueCount() < n)
                {
                    throw fail(c, c.getValueCount() + " values in a struct of " + n);
                }
                check(c);
            }
        }
        else
        {
            throw fail(v, "type " + v.getField().getType() + " is not one the ring schema uses");
        }
    }

    private static void checkOffsets(final FieldVector v, final ArrowBuf offsets, final int n, final long limit)
    {
        if (n == 0)
        {
            return;
        }
        if (offsets.capacity() < 4L * (n + 1))
        {
            throw fail(v, "offsets buffer of " + offsets.capacity() + " bytes for " + n + " values");
        }
        int prev = offsets.getInt(0);
        if (prev < 0)
        {
            throw fail(v, "first offset " + prev + " < 0");
        }
        for (int i = 1; i <= n; i++)
        {
            final int o = offsets.getInt(4L * i);
            if (o < prev)
            {
                throw fail(v, "offset[" + i + "]=" + o + " < offset[" + (i - 1) + "]=" + prev);
            }
            prev = o;
        }
        if (prev > limit)
        {
            throw fail(v, "last offset " + prev + " beyond the " + limit + " bytes/values it indexes");
        }
    }

    private static IllegalArgumentException fail(final FieldVector v, final String what)
    {
        return new IllegalArgumentException("vector " + v.getField().getName() + ": " + what);
    }
}
