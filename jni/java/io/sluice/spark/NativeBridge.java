package io.sluice.spark;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;

/**
 * The native Sluice client (the sluice-jni library bundled in this jar). Handles are
 * opaque ids; a closed or unknown handle raises {@link SluiceException}, never a crash.
 */
final class NativeBridge {
  private NativeBridge() {}

  /** Where the library sits inside the jar. */
  private static final String RESOURCE = "/native/linux-x86_64/libsluice_jni.so";

  static {
    String override = System.getProperty("sluice.native.library");
    if (override != null) {
      System.load(override);
    } else {
      System.load(extract().toString());
    }
  }

  /** Copies the bundled library to a temporary file, the only way to load it. */
  private static Path extract() {
    try (InputStream in = NativeBridge.class.getResourceAsStream(RESOURCE)) {
      if (in == null) {
        throw new UnsatisfiedLinkError("the jar does not contain " + RESOURCE);
      }
      Path file = Files.createTempFile("libsluice_jni", ".so");
      file.toFile().deleteOnExit();
      Files.copy(in, file, StandardCopyOption.REPLACE_EXISTING);
      return file;
    } catch (IOException e) {
      throw new UncheckedIOExceptionError("extracting " + RESOURCE, e);
    }
  }

  private static final class UncheckedIOExceptionError extends LinkageError {
    UncheckedIOExceptionError(String what, IOException cause) {
      super(what + ": " + cause, cause);
    }
  }

  static native long openSession(
      String servers, String tokenFile, String trustFile, String app, String secret,
      int replication, long idleTimeoutMs, long connectTimeoutMs);

  static native void closeSession(long session);

  static native long openWriter(
      long session, int server, int shuffleId, int numPartitions, long mapId, int mapIndex,
      int attempt);

  /**
   * Sends {@code count} records: record i is data[ends[i-1], ends[i]) for pids[i]. The
   * writer copies them into native buffers it keeps for the next write, sized for the
   * largest write so far (see {@link #trim}).
   */
  static native void write(long writer, int count, int[] pids, int[] ends, byte[] data, int len);

  /** Frees the native buffers the writer keeps between writes (none if it is gone). */
  static native void trim(long writer);

  /**
   * Commits the map output; returns the stored bytes of each partition, then one more
   * element: the index of the server holding its second copy, or -1.
   */
  static native long[] commit(long writer);

  /** Abandons an uncommitted map output. */
  static native void abort(long writer);

  /** A fetch from {@code server}, moving to {@code replica} (-1: none) if it fails. */
  static native long openFetch(
      long session, int server, int replica, int shuffleId, int startPartition,
      int endPartition, long[] mapIds);

  /**
   * The next batch of records: little-endian count, count lengths, then the record bytes;
   * null at the end.
   */
  static native byte[] nextBatch(long fetch);

  static native void closeFetch(long fetch);

  static native void deleteShuffle(long session, int shuffleId);

  static native void deleteApp(long session);
}
