package dev.pubsubshm.spark.sink;

import java.io.Serializable;
import java.util.Locale;

import org.apache.spark.sql.types.BinaryType;
import org.apache.spark.sql.types.DataType;
import org.apache.spark.sql.types.MapType;
import org.apache.spark.sql.types.StringType;
import org.apache.spark.sql.types.StructField;
import org.apache.spark.sql.types.StructType;

/**
 * Where the sink finds each message part in the rows written: the ordinals of {@code data}
 * (binary or string, required), {@code attributes} (map&lt;string,string&gt;, optional) and
 * {@code ordering_key} (string, optional). Any other column is an error naming it.
 */
public final class InputColumns implements Serializable
{
    private static final long serialVersionUID = 1L;

    /** The columns the sink takes, for messages. */
    public static final String EXPECTED = "data (binary or string, required), attributes (map<string,string>, optional), " +
        "ordering_key (string, optional)";

    private final int data;
    private final int attributes;
    private final int orderingKey;
    private final int numFields;

    private InputColumns(final int data, final int attributes, final int orderingKey, final int numFields)
    {
        this.data = data;
        this.attributes = attributes;
        this.orderingKey = orderingKey;
        this.numFields = numFields;
    }

    /**
     * Resolves the columns of the DataFrame written.
     *
     * @param schema the schema of the rows.
     * @return the ordinals.
     * @throws IllegalArgumentException naming the column that does not fit.
     */
    public static InputColumns resolve(final StructType schema)
    {
        int data = -1;
        int attributes = -1;
        int orderingKey = -1;
        final StructField[] fields = schema.fields();
        for (int i = 0; i < fields.length; i++)
        {
            final StructField f = fields[i];
            final DataType t = f.dataType();
            switch (f.name().toLowerCase(Locale.ROOT))
            {
                case "data" ->
                {
                    check(data, f, t instanceof BinaryType || isPlainString(t), "binary or string");
                    data = i;
                }
                case "attributes" ->
                {
                    check(attributes, f, t instanceof MapType m && isPlainString(m.keyType()) && isPlainString(m.valueType()),
                        "map<string,string>");
                    attributes = i;
                }
                case "ordering_key" ->
                {
                    check(orderingKey, f, isPlainString(t), "string");
                    orderingKey = i;
                }
                default -> throw new IllegalArgumentException("pubsub-shm sink: the rows written have a column \"" + f.name() +
                    "\" (" + t.simpleString() + ") that the sink does not take; it takes " + EXPECTED + ". Select or " +
                    "rename the columns first, e.g. df.selectExpr(\"CAST(value AS BINARY) AS data\")");
            }
        }
        if (data < 0)
        {
            throw new IllegalArgumentException("pubsub-shm sink: the rows written have no column \"data\" (the message " +
                "payload, binary or string); they have " + schema.simpleString() + ". The sink takes " + EXPECTED);
        }
        return new InputColumns(data, attributes, orderingKey, fields.length);
    }

    private static boolean isPlainString(final DataType t)
    {
        return t instanceof StringType;
    }

    private static void check(final int seen, final StructField f, final boolean ok, final String want)
    {
        if (seen >= 0)
        {
            throw new IllegalArgumentException("pubsub-shm sink: the rows written have the column \"" + f.name() +
                "\" twice (names are case-insensitive)");
        }
        if (!ok)
        {
            throw new IllegalArgumentException("pubsub-shm sink: column \"" + f.name() + "\" has type " +
                f.dataType().simpleString() + "; the sink wants " + want + " (cast it, e.g. CAST(" + f.name() + " AS " +
                (want.startsWith("map") ? "MAP<STRING,STRING>" : want.startsWith("binary") ? "BINARY" : "STRING") + "))");
        }
    }

    /** @return the ordinal of {@code data}. */
    public int data()
    {
        return data;
    }

    /** @return the ordinal of {@code attributes}, -1 if absent. */
    public int attributes()
    {
        return attributes;
    }

    /** @return the ordinal of {@code ordering_key}, -1 if absent. */
    public int orderingKey()
    {
        return orderingKey;
    }

    /** @return the number of columns of the rows. */
    public int numFields()
    {
        return numFields;
    }
}
