package dev.pubsubshm.ring;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.Objects;

/**
 * The identity a process stamps into a ring header (FORMAT.md section 2): its pid and its
 * start time in clock ticks since boot ({@code /proc/<pid>/stat} field 22), which tells a
 * process from a later one that reuses the pid. Immutable.
 *
 * <p>Heartbeats use {@link System#nanoTime()}, which on Linux is {@code CLOCK_MONOTONIC},
 * the clock Go reads with {@code unix.ClockGettime(CLOCK_MONOTONIC)}: heartbeats written by
 * either language compare directly. Pids are only meaningful inside one pid namespace: both
 * sides of a ring must see the same {@code /proc}.
 */
public final class ProcessIdentity
{
    private static final int START_TICKS_FIELD = 22;
    private static final int STATE_FIELD = 3;
    private static volatile ProcessIdentity self;

    private final long pid;
    private final long startTicks;

    /**
     * An identity with explicit values (tests and deterministic golden files).
     *
     * @param pid        process id, {@code > 0}.
     * @param startTicks start time in clock ticks since boot.
     */
    public ProcessIdentity(final long pid, final long startTicks)
    {
        if (pid <= 0)
        {
            throw new IllegalArgumentException("pid=" + pid + " must be > 0");
        }
        this.pid = pid;
        this.startTicks = startTicks;
    }

    /**
     * The identity of this JVM, read once from {@code /proc/self/stat}.
     *
     * @return this process's identity.
     * @throws IllegalStateException if {@code /proc/self/stat} cannot be read or parsed.
     */
    public static ProcessIdentity self()
    {
        ProcessIdentity identity = self;
        if (identity == null)
        {
            final long pid = ProcessHandle.current().pid();
            final long ticks = startTicksOf(pid);
            if (ticks < 0)
            {
                throw new IllegalStateException("cannot read the start time of this process pid=" + pid +
                    " from /proc/" + pid + "/stat");
            }
            identity = new ProcessIdentity(pid, ticks);
            self = identity;
        }
        return identity;
    }

    /**
     * Process id.
     *
     * @return the pid.
     */
    public long pid()
    {
        return pid;
    }

    /**
     * Start time in clock ticks since boot.
     *
     * @return {@code /proc/<pid>/stat} field 22.
     */
    public long startTicks()
    {
        return startTicks;
    }

    /**
     * Reads a process's start time.
     *
     * @param pid the process id.
     * @return field 22 of {@code /proc/<pid>/stat}, or {@code -1} if no such process runs
     * (it does not exist, or it is a zombie that has exited but not been reaped).
     * @throws IllegalStateException if the file exists but cannot be parsed.
     */
    public static long startTicksOf(final long pid)
    {
        if (pid <= 0)
        {
            return -1;
        }
        final String stat;
        try
        {
            stat = new String(Files.readAllBytes(Path.of("/proc", Long.toString(pid), "stat")),
                StandardCharsets.ISO_8859_1);
        }
        catch (final NoSuchFileException ex)
        {
            return -1;
        }
        catch (final IOException ex)
        {
            // ESRCH while reading: the process exited between open and read.
            return -1;
        }
        return parseStartTicks(stat, pid);
    }

    /**
     * Whether the process {@code pid} runs and, if {@code startTicks != 0}, started at
     * {@code startTicks}.
     *
     * @param pid        the process id stored in a ring header.
     * @param startTicks the start ticks stored beside it, 0 if unknown.
     * @return {@code true} if that very process is still running.
     */
    public static boolean isRunning(final long pid, final long startTicks)
    {
        final long ticks = startTicksOf(pid);
        return ticks >= 0 && (startTicks == 0 || ticks == startTicks);
    }

    /**
     * Parses the text of {@code /proc/<pid>/stat}. The command name (field 2) is in
     * parentheses and may itself hold spaces and parentheses, so fields are counted from
     * after the <em>last</em> {@code ')'}.
     *
     * @param stat the file's text.
     * @param pid  the pid it was read for (for messages).
     * @return field 22 (start time), or {@code -1} if the process is a zombie or dead
     * (state field {@code Z}, {@code X} or {@code x}).
     * @throws IllegalStateException if the text does not have the expected shape.
     */
    static long parseStartTicks(final String stat, final long pid)
    {
        final int close = stat.lastIndexOf(')');
        if (close < 0)
        {
            throw new IllegalStateException("unparsable /proc/" + pid + "/stat: no ')' in \"" + stat + "\"");
        }
        int field = 2;
        int i = close + 1;
        final int n = stat.length();
        char state = 0;
        while (i < n)
        {
            while (i < n && stat.charAt(i) == ' ')
            {
                i++;
            }
            if (i >= n || stat.charAt(i) == '\n')
            {
                break;
            }
            field++;
            final int start = i;
            while (i < n && stat.charAt(i) != ' ' && stat.charAt(i) != '\n')
            {
                i++;
            }
            if (field == STATE_FIELD)
            {
                state = stat.charAt(start);
            }
            else if (field == START_TICKS_FIELD)
            {
                if (state == 'Z' || state == 'X' || state == 'x')
                {
                    return -1;
                }
                try
                {
                    return Long.parseLong(stat, start, i, 10);
                }
                catch (final NumberFormatException ex)
                {
                    throw new IllegalStateException("unparsable /proc/" + pid + "/stat: field 22=\"" +
                        stat.substring(start, i) + "\" is not a number", ex);
                }
            }
        }
        throw new IllegalStateException("unparsable /proc/" + pid + "/stat: only " + field + " fields");
    }

    @Override
    public boolean equals(final Object o)
    {
        return o instanceof ProcessIdentity other && other.pid == pid && other.startTicks == startTicks;
    }

    @Override
    public int hashCode()
    {
        return Objects.hash(pid, startTicks);
    }

    @Override
    public String toString()
    {
        return "pid=" + pid + " start_ticks=" + startTicks;
    }
}
