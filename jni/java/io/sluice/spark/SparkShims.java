package io.sluice.spark;

import java.lang.reflect.Constructor;
import java.lang.reflect.Method;
import org.apache.spark.TaskContext;
import org.apache.spark.scheduler.MapStatus;
import org.apache.spark.scheduler.MapStatus$;
import org.apache.spark.serializer.Serializer;
import org.apache.spark.storage.BlockManagerId;
import org.apache.spark.util.collection.ExternalSorter;
import scala.Option;
import scala.math.Ordering;

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

  /**
   * {@code new ExternalSorter(context, None, None, ordering, serializer)}. Spark 4.3 added
   * a sixth parameter; any parameter after the fifth gets its Scala default.
   */
  private static final Constructor<?> SORTER = findSorter();

  private static Constructor<?> findSorter() {
    for (Constructor<?> c : ExternalSorter.class.getConstructors()) {
      Class<?>[] p = c.getParameterTypes();
      if (p.length >= 5 && p[0] == TaskContext.class && p[4] == Serializer.class) {
        return c;
      }
    }
    throw new LinkageError("this Spark has no ExternalSorter(TaskContext, ..., Serializer)");
  }

  @SuppressWarnings("rawtypes")
  static ExternalSorter sorter(TaskContext context, Option<? extends Ordering<?>> ordering,
      Serializer serializer) {
    try {
      Object[] args = new Object[SORTER.getParameterCount()];
      args[0] = context;
      args[1] = Option.empty();
      args[2] = Option.empty();
      args[3] = ordering;
      args[4] = serializer;
      for (int i = 5; i < args.length; i++) {
        args[i] = ExternalSorter.class.getMethod("$lessinit$greater$default$" + (i + 1)).invoke(null);
      }
      return (ExternalSorter) SORTER.newInstance(args);
    } catch (ReflectiveOperationException e) {
      throw new IllegalStateException("creating an ExternalSorter failed", e);
    }
  }
}
