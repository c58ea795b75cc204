package dev.pubsubshm.bench.common;

/**
 * Builds one JSON object on one line from numbers and plain strings (the bench consumers'
 * output; no dependency on a JSON library). Strings are escaped for quotes, backslashes and
 * control characters.
 */
public final class JsonLine
{
    private final StringBuilder sb = new StringBuilder(256).append('{');

    /** Adds a number field. */
    public JsonLine put(final String name, final long value)
    {
        key(name).append(value);
        return this;
    }

    /** Adds a number field; NaN and infinities are written as null. */
    public JsonLine put(final String name, final double value)
    {
        if (Double.isNaN(value) || Double.isInfinite(value))
        {
            key(name).append("null");
        }
        else
        {
            key(name).append(value);
        }
        return this;
    }

    /** Adds an array of numbers. */
    public JsonLine put(final String name, final long[] values)
    {
        key(name).append('[');
        for (int i = 0; i < values.length; i++)
        {
            sb.append(i == 0 ? "" : ",").append(values[i]);
        }
        sb.append(']');
        return this;
    }

    /** Adds a boolean field. */
    public JsonLine put(final String name, final boolean value)
    {
        key(name).append(value);
        return this;
    }

    /** Adds a string field. */
    public JsonLine put(final String name, final String value)
    {
        key(name).append('"');
        for (int i = 0; i < value.length(); i++)
        {
            final char c = value.charAt(i);
            if (c == '"' || c == '\\')
            {
                sb.append('\\').append(c);
            }
            else if (c < 0x20)
            {
                sb.append(String.format("\\u%04x", (int)c));
            }
            else
            {
                sb.append(c);
            }
        }
        sb.append('"');
        return this;
    }

    private StringBuilder key(final String name)
    {
        if (sb.length() > 1)
        {
            sb.append(',');
        }
        return sb.append('"').append(name).append("\":");
    }

    @Override
    public String toString()
    {
        return sb.toString() + '}';
    }
}
