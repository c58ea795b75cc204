package dev.pubsubshm.spark;

import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.apache.spark.sql.connector.read.streaming.Offset;

/**
 * The source's offset: per ring incarnation, the last batch id a micro-batch includes, like
 * Kafka's per-partition offsets. Batch ids are 1, 2, 3, ... per incarnation
 * ({@code ring_instance_id}), so {@code (instance, batch)} names a position in the stream
 * exactly, and a micro-batch {@code (start, end]} is the batches {@code start.batch + 1 ..
 * end.batch} of each ring: fixed when planned, the same when a task is retried or the query
 * restarts.
 *
 * <p>A ring that appears in an end offset but not in its start offset (a ring that was
 * empty, or created, since the start) carries {@code base}: the batch before the first one
 * the micro-batch includes. Entries are kept in a canonical order, so equal offsets have
 * equal JSON (Spark compares offsets by their JSON):
 *
 * <pre>
 * {"v":1,"rings":[{"host":"h1","partition":0,"instance":"8f3a0c2e91d4b7a6","batch":42},
 *                 {"host":"h1","partition":1,"instance":"0c11f2d3a4b5c6d7","batch":7,"base":3}]}
 * </pre>
 *
 * Immutable.
 */
public final class RingOffset extends Offset
{
    /** Version of the JSON layout. */
    public static final int VERSION = 1;
    /** No {@code base}. */
    public static final long NO_BASE = -1;

    private static final ObjectMapper JSON = new ObjectMapper();
    private static final Comparator<Entry> ORDER = Comparator.comparing(Entry::host)
        .thenComparingInt(Entry::partition).thenComparing(e -> Long.toUnsignedString(e.instanceId()));

    private final List<Entry> entries;
    private final Map<Long, Entry> byInstance;
    private final String json;

    /**
     * One ring's position.
     *
     * @param host       the host that holds the ring.
     * @param partition  the ring's virtual partition.
     * @param instanceId the ring's {@code ring_instance_id}.
     * @param batch      the last batch id included (0: none).
     * @param base       for a ring new in this offset, the batch before its first included one; else {@link #NO_BASE}.
     */
    public record Entry(String host, int partition, long instanceId, long batch, long base)
    {
        /**
         * Validates the values.
         */
        public Entry
        {
            Objects.requireNonNull(host, "host");
            if (partition < 0 || instanceId == 0 || batch < 0 || base < NO_BASE || (base != NO_BASE && base > batch))
            {
                throw new IllegalArgumentException("bad ring offset host=" + host + " partition=" + partition + " instance=" +
                    RingRegistry.hex(instanceId) + " batch=" + batch + " base=" + base);
            }
        }

        /** @return this entry without {@code base}. */
        public Entry withoutBase()
        {
            return base == NO_BASE ? this : new Entry(host, partition, instanceId, batch, NO_BASE);
        }
    }

    /**
     * @param entries the rings (any order; at most one per instance id).
     * @throws IllegalArgumentException if an instance id appears twice.
     */
    public RingOffset(final Collection<Entry> entries)
    {
        final List<Entry> sorted = new ArrayList<>(entries);
        sorted.sort(ORDER);
        final Map<Long, Entry> map = new HashMap<>();
        for (final Entry e : sorted)
        {
            if (map.put(e.instanceId(), e) != null)
            {
                throw new IllegalArgumentException("ring instance " + RingRegistry.hex(e.instanceId()) + " appears twice in " +
                    "an offset");
            }
        }
        this.entries = Collections.unmodifiableList(sorted);
        this.byInstance = map;
        this.json = toJson(this.entries);
    }

    /** @return the empty offset (no ring seen yet). */
    public static RingOffset empty()
    {
        return new RingOffset(List.of());
    }

    /** @return the entries, in canonical order. */
    public List<Entry> entries()
    {
        return entries;
    }

    /**
     * @param instanceId a {@code ring_instance_id}.
     * @return its entry, or {@code null}.
     */
    public Entry get(final long instanceId)
    {
        return byInstance.get(instanceId);
    }

    @Override
    public String json()
    {
        return json;
    }

    private static String toJson(final List<Entry> entries)
    {
        final ObjectNode root = JSON.createObjectNode();
        root.put("v", VERSION);
        final ArrayNode rings = root.putArray("rings");
        for (final Entry e : entries)
        {
            final ObjectNode o = rings.addObject();
            o.put("host", e.host());
            o.put("partition", e.partition());
            o.put("instance", RingRegistry.hex(e.instanceId()));
            o.put("batch", e.batch());
            if (e.base() != NO_BASE)
            {
                o.put("base", e.base());
            }
        }
        try
        {
            return JSON.writeValueAsString(root);
        }
        catch (final JsonProcessingException ex)
        {
            throw new IllegalStateException(ex);
        }
    }

    /**
     * Parses {@link #json()}.
     *
     * @param json an offset as Spark stored it in the checkpoint.
     * @return the offset.
     * @throws IllegalArgumentException naming what is wrong with the JSON.
     */
    public static RingOffset fromJson(final String json)
    {
        final JsonNode root;
        try
        {
            root = JSON.readTree(json);
        }
        catch (final JsonProcessingException ex)
        {
            throw new IllegalArgumentException("pubsub-shm: unreadable offset " + json + ": " + ex.getOriginalMessage(), ex);
        }
        if (root == null || !root.isObject() || root.path("v").asInt(-1) != VERSION || !root.path("rings").isArray())
        {
            throw new IllegalArgumentException("pubsub-shm: offset " + json + " is not a version " + VERSION +
                " pubsub-shm offset ({\"v\":1,\"rings\":[...]}); was the checkpoint written by another source?");
        }
        final List<Entry> entries = new ArrayList<>();
        for (final JsonNode o : root.path("rings"))
        {
            final String instance = o.path("instance").asText("");
            final long id;
            try
            {
                id = Long.parseUnsignedLong(instance, 16);
            }
            catch (final NumberFormatException ex)
            {
                throw new IllegalArgumentException("pubsub-shm: offset " + json + ": instance \"" + instance +
                    "\" is not a hexadecimal ring_instance_id", ex);
            }
            if (!o.path("host").isTextual() || !o.path("partition").canConvertToInt() || !o.path("batch").canConvertToLong())
            {
                throw new IllegalArgumentException("pubsub-shm: offset " + json + ": ring entry " + o +
                    " needs host, partition, instance and batch");
            }
            entries.add(new Entry(o.path("host").asText(), o.path("partition").asInt(), id, o.path("batch").asLong(),
                o.has("base") ? o.path("base").asLong() : NO_BASE));
        }
        return new RingOffset(entries);
    }

    /**
     * This source's offset from any form Spark hands back: a {@code RingOffset}, or a
     * {@code SerializedOffset} read from the offset log (e.g. in progress reporting).
     *
     * @param offset an offset of this source.
     * @return it as a {@code RingOffset}.
     */
    public static RingOffset of(final Offset offset)
    {
        return offset instanceof RingOffset r ? r : fromJson(offset.json());
    }

    @Override
    public String toString()
    {
        return json;
    }
}
