// An OpenJDK workload for stasis' end-to-end tests: threads counting, served on a unix socket.
//
// Usage: java Counter.java SOCKET. Starts four threads, each counting in a loop with a short
// sleep, fills an array of 1M longs from a seed, listens on SOCKET and prints READY. Each
// connection carries one line and gets one line back, then the server closes it: `add N` adds N
// to a running total and answers the total; `state` answers the four counts, the array's checksum
// and the pid; `verify` checks that every thread is alive and still counting (each count grows
// again) and the array, answers PASS or FAIL: ..., prints the same and exits (0 on PASS).

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.Channels;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.atomic.AtomicLongArray;

public class Counter {
    static final int THREADS = 4;
    static final AtomicLongArray counts = new AtomicLongArray(THREADS);
    static final long[] table = new long[1 << 20];

    static long checksum() {
        long sum = 0;
        for (int i = 0; i < table.length; i++) sum = sum * 31 + table[i];
        return sum;
    }

    static String state() {
        StringBuilder out = new StringBuilder();
        for (int i = 0; i < THREADS; i++) out.append(counts.get(i)).append(' ');
        return out.append(checksum()).append(' ').append(ProcessHandle.current().pid()).toString();
    }

    static String verify(Thread[] workers, long atStart) throws InterruptedException {
        long[] from = new long[THREADS];
        for (int i = 0; i < THREADS; i++) from[i] = counts.get(i);
        for (int i = 0; i < THREADS; i++) {
            if (!workers[i].isAlive()) return "FAIL: thread " + i + " is not alive";
            long deadline = System.nanoTime() + 20_000_000_000L;
            while (counts.get(i) < from[i] + 3) {
                if (System.nanoTime() > deadline) return "FAIL: thread " + i + " stopped counting at " + counts.get(i);
                Thread.sleep(5);
            }
        }
        long now = checksum();
        return now == atStart ? "PASS" : "FAIL: array checksum " + now + ", was " + atStart;
    }

    public static void main(String[] args) throws Exception {
        for (int i = 0; i < table.length; i++) table[i] = (i * 2654435761L) % 1000003;
        long atStart = checksum();
        Thread[] workers = new Thread[THREADS];
        for (int i = 0; i < THREADS; i++) {
            final int me = i;
            workers[i] = new Thread(() -> {
                while (true) {
                    counts.incrementAndGet(me);
                    try {
                        Thread.sleep(2);
                    } catch (InterruptedException e) {
                        return;
                    }
                }
            }, "counter-" + i);
            workers[i].setDaemon(true);
            workers[i].start();
        }
        long total = 0;
        ServerSocketChannel server = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
        server.bind(UnixDomainSocketAddress.of(args[0]));
        System.out.println("READY");
        while (true) {
            try (SocketChannel conn = server.accept()) {
                BufferedReader in = new BufferedReader(new InputStreamReader(Channels.newInputStream(conn), StandardCharsets.UTF_8));
                String line = in.readLine().trim();
                String reply;
                boolean done = false;
                if (line.startsWith("add ")) {
                    total += Long.parseLong(line.substring(4));
                    reply = Long.toString(total);
                } else if (line.equals("state")) {
                    reply = state();
                } else if (line.equals("verify")) {
                    reply = verify(workers, atStart);
                    done = true;
                } else {
                    reply = "FAIL: unknown request " + line;
                }
                conn.write(ByteBuffer.wrap((reply + "\n").getBytes(StandardCharsets.UTF_8)));
                if (done) {
                    System.out.println(reply);
                    System.exit(reply.equals("PASS") ? 0 : 1);
                }
            }
        }
    }
}
