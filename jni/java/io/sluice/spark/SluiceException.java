package io.sluice.spark;

/** An error from the native Sluice client (thrown by {@link NativeBridge}). */
public final class SluiceException extends RuntimeException {
  public SluiceException(String message) {
    super(message);
  }
}
