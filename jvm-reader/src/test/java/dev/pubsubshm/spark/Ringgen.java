package dev.pubsubshm.spark;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

/**
 * {@code bench/cmd/ringgen} as a real process: the synthetic stand-in for pullerd that creates
 * a ring set, fills its DATA rings with checksummed messages (bench/synth) and checks that every
 * batch it wrote is committed exactly once. Built once per JVM with {@code go build} into
 * {@code jvm-reader/target}, from the repository root.
 */
final class Ringgen implements AutoCloseable
{
    private static final ObjectMapper JSON = new ObjectMapper();
    private static Path binary;

    private final Process process;
    private final List<String> stdout = new ArrayList<>();
    private final StringBuffer stderr = new StringBuffer();
    private final CountDownLatch ready = new CountDownLatch(1);
    private final Thread outReader;
    private final Thread errReader;

    private Ringgen(final Process process)
    {
        this.process = process;
        this.outReader = new Thread(() -> pump(process.getInputStream(), true), "ringgen-stdout");
        this.errReader = new Thread(() -> pump(process.getErrorStream(), false), "ringgen-stderr");
        outReader.setDaemon(true);
        errReader.setDaemon(true);
        outReader.start();
        errReader.start();
    }

    /** The repository root (the Go module). */
    static Path repoRoot()
    {
        final String root = System.getProperty("repo.root");
        return (root != null ? Path.of(root) : Path.of("").toAbsolutePath().getParent()).toAbsolutePath().normalize();
    }

    /** Builds ringgen once; fails with go's output if the build fails. */
    static synchronized Path binary()
    {
        if (binary == null)
        {
            final Path out = repoRoot().resolve("jvm-reader/target/ringgen");
            try
            {
                final Process go = new ProcessBuilder("go", "build", "-o", out.toString(), "./bench/cmd/ringgen")
                    .directory(repoRoot().toFile()).redirectErrorStream(true).start();
                final String output = new String(go.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
                if (!go.waitFor(5, TimeUnit.MINUTES) || go.exitValue() != 0)
                {
                    throw new IllegalStateException("`go build ./bench/cmd/ringgen` in " + repoRoot() + " failed:\n" + output);
                }
            }
            catch (final IOException ex)
            {
                throw new IllegalStateException("cannot run `go build ./bench/cmd/ringgen` in " + repoRoot() +
                    " (is Go on the PATH?)", ex);
            }
            catch (final InterruptedException ex)
            {
                Thread.currentThread().interrupt();
                throw new IllegalStateException(ex);
            }
            binary = out;
        }
        return binary;
    }

    /**
     * Starts ringgen on a ring set directory and waits for its {@code READY} line.
     *
     * @param dir  the ring set directory to create (its parent must exist, mode 0700).
     * @param args more flags, e.g. {@code -partitions 4 -count 1000}.
     * @return the running process.
     */
    static Ringgen start(final Path dir, final String... args)
    {
        final List<String> cmd = new ArrayList<>(List.of(binary().toString(), "-dir", dir.toString()));
        cmd.addAll(List.of(args));
        final Ringgen g;
        try
        {
            g = new Ringgen(new ProcessBuilder(cmd).start());
        }
        catch (final IOException ex)
        {
            throw new UncheckedIOException("cannot start " + cmd, ex);
        }
        try
        {
            if (!g.ready.await(60, TimeUnit.SECONDS))
            {
                g.close();
                throw new IllegalStateException("ringgen did not print READY within 60 s; stderr:\n" + g.stderr);
            }
        }
        catch (final InterruptedException ex)
        {
            Thread.currentThread().interrupt();
            g.close();
            throw new IllegalStateException(ex);
        }
        try
        {
            // A bad flag combination fails right after READY: report it here, with go's words.
            if (g.process.waitFor(200, TimeUnit.MILLISECONDS) && g.process.exitValue() != 0)
            {
                throw new IllegalStateException("ringgen " + cmd + " exited with " + g.process.exitValue() + ":\n" + g.stderr);
            }
        }
        catch (final InterruptedException ex)
        {
            Thread.currentThread().interrupt();
            g.close();
            throw new IllegalStateException(ex);
        }
        return g;
    }

    private void pump(final InputStream in, final boolean out)
    {
        try (BufferedReader r = new BufferedReader(new InputStreamReader(in, StandardCharsets.UTF_8)))
        {
            String line;
            while ((line = r.readLine()) != null)
            {
                if (out)
                {
                    synchronized (stdout)
                    {
                        stdout.add(line);
                    }
                    if (line.startsWith("READY "))
                    {
                        ready.countDown();
                    }
                }
                else
                {
                    stderr.append(line).append('\n');
                }
            }
        }
        catch (final IOException ignored)
        {
            // the process ended
        }
        finally
        {
            ready.countDown();
        }
    }

    /** @return whether the process still runs. */
    boolean isAlive()
    {
        return process.isAlive();
    }

    /**
     * Waits for ringgen to exit by itself (with {@code -exit-when-committed}) and returns its
     * summary line.
     *
     * @param timeoutS how long to wait.
     * @return the summary (partitions[].batches, batches_committed, ...).
     * @throws AssertionError if it does not exit in time or exits with an error.
     */
    JsonNode awaitSummary(final long timeoutS) throws InterruptedException
    {
        if (!process.waitFor(timeoutS, TimeUnit.SECONDS))
        {
            throw new AssertionError("ringgen did not exit within " + timeoutS + " s (not every batch committed?); " +
                "stderr:\n" + stderr);
        }
        return summary();
    }

    /**
     * Stops ringgen with SIGTERM and returns its summary line.
     *
     * @return the summary.
     */
    JsonNode stop() throws InterruptedException
    {
        process.destroy();
        if (!process.waitFor(30, TimeUnit.SECONDS))
        {
            process.destroyForcibly();
            throw new AssertionError("ringgen did not stop within 30 s of SIGTERM");
        }
        return summary();
    }

    private JsonNode summary() throws InterruptedException
    {
        outReader.join(10_000);
        errReader.join(10_000);
        final String last;
        synchronized (stdout)
        {
            last = stdout.isEmpty() ? "" : stdout.get(stdout.size() - 1);
        }
        if (process.exitValue() != 0)
        {
            throw new AssertionError("ringgen exited with " + process.exitValue() + "; last line: " + last + "\nstderr:\n" + stderr);
        }
        try
        {
            return JSON.readTree(last);
        }
        catch (final IOException ex)
        {
            throw new AssertionError("ringgen's last line is not its JSON summary: " + last, ex);
        }
    }

    /** @return what ringgen wrote to stderr so far. */
    String stderr()
    {
        return stderr.toString();
    }

    @Override
    public void close()
    {
        if (process.isAlive())
        {
            process.destroy();
            try
            {
                if (!process.waitFor(30, TimeUnit.SECONDS))
                {
                    process.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
                }
            }
            catch (final InterruptedException ex)
            {
                process.destroyForcibly();
                Thread.currentThread().interrupt();
            }
        }
    }

    /** @return a ring root under /dev/shm, mode 0700, unique to the caller. */
    static Path newRoot(final String prefix)
    {
        try
        {
            return Files.createTempDirectory(Path.of("/dev/shm"), prefix,
                java.nio.file.attribute.PosixFilePermissions.asFileAttribute(
                    java.nio.file.attribute.PosixFilePermissions.fromString("rwx------")));
        }
        catch (final IOException ex)
        {
            throw new UncheckedIOException(ex);
        }
    }

    /** Deletes a directory tree (test cleanup). */
    static void deleteTree(final Path root)
    {
        if (root == null || !Files.exists(root))
        {
            return;
        }
        try (var walk = Files.walk(root))
        {
            walk.sorted(java.util.Comparator.reverseOrder()).forEach(p ->
            {
                try
                {
                    Files.deleteIfExists(p);
                }
                catch (final IOException ex)
                {
                    throw new UncheckedIOException(ex);
                }
            });
        }
        catch (final IOException ex)
        {
            throw new UncheckedIOException(ex);
        }
    }
}
