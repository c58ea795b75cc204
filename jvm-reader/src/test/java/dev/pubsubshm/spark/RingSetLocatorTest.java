package dev.pubsubshm.spark;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.Channels;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.atomic.AtomicReference;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Finding the ring set, and asking pullerd (here a fake on a real unix socket) to create it. */
class RingSetLocatorTest
{
    private static final ObjectMapper JSON = new ObjectMapper();
    private Path root;

    @BeforeEach
    void setUp()
    {
        root = Ringgen.newRoot("pubsub-shm-locator-test-");
    }

    @AfterEach
    void tearDown()
    {
        RingRegistry.get().detachIdle();
        Ringgen.deleteTree(root);
    }

    private SourceOptions options(final String... kv)
    {
        final Map<String, String> m = new HashMap<>(Map.of("projectId", "proj", "subscriptionId", "sub-a",
            "ringRoot", root.toString(), "pullerdTimeoutMs", "5000"));
        for (int i = 0; i < kv.length; i += 2)
        {
            m.put(kv[i], kv[i + 1]);
        }
        return SourceOptions.parse(m, 4, Map.of());
    }

    /** Serves one control connection: answers one request line with {@code answer(request)}. */
    private Thread fakePullerd(final ServerSocketChannel server, final java.util.function.Function<JsonNode, String> answer,
        final AtomicReference<JsonNode> seen)
    {
        final Thread t = new Thread(() ->
        {
            try (SocketChannel ch = server.accept())
            {
                final BufferedReader in = new BufferedReader(new InputStreamReader(Channels.newInputStream(ch),
                    StandardCharsets.UTF_8));
                final JsonNode req = JSON.readTree(in.readLine());
                seen.set(req);
                ch.write(ByteBuffer.wrap((answer.apply(req) + "\n").getBytes(StandardCharsets.UTF_8)));
            }
            catch (final IOException ex)
            {
                throw new java.io.UncheckedIOException(ex);
            }
        }, "fake-pullerd");
        t.setDaemon(true);
        t.start();
        return t;
    }

    private ServerSocketChannel listen() throws IOException
    {
        final ServerSocketChannel server = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
        server.bind(UnixDomainSocketAddress.of(root.resolve("control.sock")));
        return server;
    }

    @Test
    void anExistingRingSetIsFound()
    {
        try (JavaRingSet set = new JavaRingSet(root.resolve("proj.sub-a"), 1, 4096))
        {
            assertEquals(set.dir, RingSetLocator.locate(options()));
        }
    }

    @Test
    @Timeout(30)
    void pullerdIsAskedToAttachTheSubscription() throws Exception
    {
        final AtomicReference<JsonNode> seen = new AtomicReference<>();
        final Path dir = root.resolve("proj.sub-a");
        final JavaRingSet[] created = new JavaRingSet[1];
        try (ServerSocketChannel server = listen())
        {
            final Thread t = fakePullerd(server, req ->
            {
                created[0] = new JavaRingSet(dir, 3, 4096);
                return "{\"ok\":true,\"ring_set\":{\"project\":\"proj\",\"subscription\":\"sub-a\",\"dir\":\"" + dir + "\"}}";
            }, seen);
            assertEquals(dir, RingSetLocator.locate(options("numPartitions", "3")));
            t.join();
            assertEquals("attach", seen.get().path("op").asText());
            assertEquals("proj", seen.get().path("project").asText());
            assertEquals("sub-a", seen.get().path("subscription").asText());
            assertEquals(3, seen.get().path("partitions").asInt(), "numPartitions is asked of pullerd");
        }
        finally
        {
            if (created[0] != null)
            {
                created[0].close();
            }
        }
    }

    @Test
    @Timeout(30)
    void pullerdsRefusalIsReported() throws Exception
    {
        final AtomicReference<JsonNode> seen = new AtomicReference<>();
        try (ServerSocketChannel server = listen())
        {
            fakePullerd(server, req -> "{\"ok\":false,\"error\":\"attach projects/proj/subscriptions/sub-a: NotFound\"}", seen);
            final IllegalStateException ex = assertThrows(IllegalStateException.class, () -> RingSetLocator.locate(options()));
            assertTrue(ex.getMessage().contains("refused to attach projects/proj/subscriptions/sub-a: attach " +
                "projects/proj/subscriptions/sub-a: NotFound"), ex.getMessage());
            assertTrue(!seen.get().has("partitions"), "no numPartitions given: pullerd's default");
        }
    }

    @Test
    void aStaleSocketAndAMissingOneAreClearErrors() throws Exception
    {
        IllegalStateException ex = assertThrows(IllegalStateException.class, () -> RingSetLocator.locate(options()));
        assertTrue(ex.getMessage().contains("no ring set for projects/proj/subscriptions/sub-a on this host: \"" +
            root.resolve("proj.sub-a") + "\" does not exist"), ex.getMessage());
        assertTrue(ex.getMessage().contains("pullerd -project proj -subscription sub-a"), ex.getMessage());

        listen().close(); // a pullerd that was killed leaves its socket file behind
        ex = assertThrows(IllegalStateException.class, () -> RingSetLocator.locate(options()));
        assertTrue(ex.getMessage().contains("no pullerd answers on \"" + root.resolve("control.sock") + "\""), ex.getMessage());
    }
}
