using Orleans.Placement;
using Orleans.Runtime.Placement;

namespace TauCluster.Grains;

/// <summary>
/// Places a new activation on a compatible silo other than the caller's, taking them in turn, so that the context
/// shards a session creates spread over the rest of the cluster. A cluster of one silo places it there.
/// </summary>
[Serializable, GenerateSerializer, Immutable]
public sealed class AwayFromCallerPlacement : PlacementStrategy
{
    public static AwayFromCallerPlacement Instance { get; } = new();
}

[AttributeUsage(AttributeTargets.Class, AllowMultiple = false)]
public sealed class AwayFromCallerPlacementAttribute() : PlacementAttribute(AwayFromCallerPlacement.Instance);

public sealed class AwayFromCallerPlacementDirector : IPlacementDirector
{
    private int next;

    public Task<SiloAddress> OnAddActivation(PlacementStrategy strategy, PlacementTarget target, IPlacementContext context)
    {
        var compatible = context.GetCompatibleSilos(target);
        if (IPlacementDirector.GetPlacementHint(target.RequestContextData, compatible) is { } hint) return Task.FromResult(hint);
        var others = compatible.Where(s => !s.Equals(context.LocalSilo)).OrderBy(s => s.ToString(), StringComparer.Ordinal).ToArray();
        var pool = others.Length > 0 ? others : compatible;
        return Task.FromResult(pool[(int)((uint)Interlocked.Increment(ref next) % (uint)pool.Length)]);
    }
}
