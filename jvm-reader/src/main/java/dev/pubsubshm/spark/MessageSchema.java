package dev.pubsubshm.spark;

import java.nio.file.Path;
import java.util.List;

import org.apache.arrow.vector.types.TimeUnit;
import org.apache.arrow.vector.types.pojo.ArrowType;
import org.apache.arrow.vector.types.pojo.Field;
import org.apache.arrow.vector.types.pojo.Schema;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.sql.types.Metadata;
import org.apache.spark.sql.types.StructField;
import org.apache.spark.sql.types.StructType;

/**
 * The fixed schema of {@code format("pubsub-shm")}: one row per Pub/Sub message, the columns
 * of the Arrow message schema pullerd writes (docs/FORMAT.md section 5) with their Spark
 * types. The source reads the ring batches as they are, so the two must agree column by
 * column; {@link #check} refuses a ring whose header carries anything else.
 *
 * <pre>
 *  # column            Arrow (ring)                       Spark
 *  0 message_id        utf8, not null                     string, not null
 *  1 publish_time      timestamp(us, "UTC"), not null     timestamp, not null
 *  2 data              binary, not null                   binary, not null
 *  3 attributes        map&lt;utf8, utf8&gt;, not null         map&lt;string, string&gt;, not null
 *  4 ordering_key      utf8, nullable                     string
 *  5 delivery_attempt  int32, nullable                    int
 * </pre>
 */
public final class MessageSchema
{
    /** Column names, in order. */
    public static final List<String> COLUMNS =
        List.of("message_id", "publish_time", "data", "attributes", "ordering_key", "delivery_attempt");

    /** The Spark schema of the source. */
    public static final StructType SPARK_SCHEMA = new StructType(new StructField[] {
        new StructField("message_id", DataTypes.StringType, false, Metadata.empty()),
        new StructField("publish_time", DataTypes.TimestampType, false, Metadata.empty()),
        new StructField("data", DataTypes.BinaryType, false, Metadata.empty()),
        new StructField("attributes", DataTypes.createMapType(DataTypes.StringType, DataTypes.StringType, true), false,
            Metadata.empty()),
        new StructField("ordering_key", DataTypes.StringType, true, Metadata.empty()),
        new StructField("delivery_attempt", DataTypes.IntegerType, true, Metadata.empty()),
    });

    private MessageSchema()
    {
    }

    /**
     * Checks that a ring's Arrow schema is the message schema: same columns, types and
     * nullability (the map's entries: key utf8 not null, value utf8).
     *
     * @param schema the schema read from the ring header.
     * @param ring   the ring, for the message.
     * @throws IllegalStateException naming the first column that differs.
     */
    public static void check(final Schema schema, final Path ring)
    {
        final List<Field> fields = schema.getFields();
        if (fields.size() != COLUMNS.size())
        {
            throw mismatch(ring, schema, "it has " + fields.size() + " columns, the message schema " + COLUMNS.size());
        }
        for (int i = 0; i < fields.size(); i++)
        {
            final Field f = fields.get(i);
            if (!COLUMNS.get(i).equals(f.getName())) // a corrupt schema may carry no name
            {
                throw mismatch(ring, schema, "column " + i + " is \"" + f.getName() + "\", not \"" + COLUMNS.get(i) + "\"");
            }
            final boolean nullable = SPARK_SCHEMA.fields()[i].nullable();
            if (f.isNullable() != nullable)
            {
                throw mismatch(ring, schema, "column " + f.getName() + " nullable=" + f.isNullable() + ", want " + nullable);
            }
        }
        expect(ring, schema, fields.get(0), fields.get(0).getType() instanceof ArrowType.Utf8);
        expect(ring, schema, fields.get(1), fields.get(1).getType() instanceof ArrowType.Timestamp t &&
            t.getUnit() == TimeUnit.MICROSECOND && "UTC".equals(t.getTimezone()));
        expect(ring, schema, fields.get(2), fields.get(2).getType() instanceof ArrowType.Binary);
        final Field map = fields.get(3);
        boolean mapOk = map.getType() instanceof ArrowType.Map && map.getChildren().size() == 1;
        if (mapOk)
        {
            final List<Field> kv = map.getChildren().get(0).getChildren();
            // Spark's ArrowColumnVector finds the entries by name ("key", "value").
            mapOk = kv.size() == 2 && kv.get(0).getType() instanceof ArrowType.Utf8 && !kv.get(0).isNullable() &&
                kv.get(1).getType() instanceof ArrowType.Utf8 && "key".equals(kv.get(0).getName()) &&
                "value".equals(kv.get(1).getName());
        }
        expect(ring, schema, map, mapOk);
        expect(ring, schema, fields.get(4), fields.get(4).getType() instanceof ArrowType.Utf8);
        expect(ring, schema, fields.get(5), fields.get(5).getType() instanceof ArrowType.Int i &&
            i.getBitWidth() == 32 && i.getIsSigned());
    }

    private static void expect(final Path ring, final Schema schema, final Field f, final boolean ok)
    {
        if (!ok)
        {
            throw mismatch(ring, schema, "column " + f.getName() + " has type " + f.getType());
        }
    }

    private static IllegalStateException mismatch(final Path ring, final Schema schema, final String what)
    {
        return new IllegalStateException("pubsub-shm: ring \"" + ring + "\" does not carry the message schema of " +
            "docs/FORMAT.md section 5: " + what + " (ring schema: " + schema + ")");
    }
}
