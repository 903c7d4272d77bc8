package io.sluice.spark;

import java.lang.reflect.Method;
import org.apache.spark.scheduler.MapStatus;
import org.apache.spark.scheduler.MapStatus$;
import org.apache.spark.storage.BlockManagerId;

/** The few Spark calls whose signature differs between the versions we support. */
final class SparkShims {
  private SparkShims() {}

  /** {@code MapStatus.apply}: (loc, sizes, mapId) on 3.5, plus a checksum on 4.x. */
  private static final Method MAP_STATUS_APPLY = findMapStatusApply();

  private static Method findMapStatusApply() {
    for (Method m : MapStatus$.class.getMethods()) {
      Class<?>[] p = m.getParameterTypes();
      if (m.getName().equals("apply") && p.length >= 3 && p[0] == BlockManagerId.class
          && p[1] == long[].class) {
        return m;
      }
    }
    throw new LinkageError("this Spark has no MapStatus.apply(BlockManagerId, long[], ...)");
  }

  static MapStatus mapStatus(BlockManagerId location, long[] sizes, long mapId) {
    try {
      Object[] args = MAP_STATUS_APPLY.getParameterCount() == 3
          ? new Object[] {location, sizes, mapId}
          : new Object[] {location, sizes, mapId, 0L};
      return (MapStatus) MAP_STATUS_APPLY.invoke(MapStatus$.MODULE$, args);
    } catch (ReflectiveOperationException e) {
      throw new IllegalStateException("MapStatus.apply failed", e);
    }
  }
}
