using Orleans.Placement;
using Orleans.Runtime.Placement;

namespace TauCluster.Grains;

/// <summary>
/// Places a grain on the silo its key names (<c>SiloAddress.ToParsableString()</c>), so that a caller can ask each
/// silo about itself through an ordinary grain call. A silo that is not in the cluster (gone, or another generation of
/// the same address) cannot host it, and the call fails with <see cref="SiloUnavailableException"/>.
/// </summary>
[Serializable, GenerateSerializer, Immutable]
public sealed class SiloPinnedPlacement : PlacementStrategy
{
    public static SiloPinnedPlacement Instance { get; } = new();
}

[AttributeUsage(AttributeTargets.Class, AllowMultiple = false)]
public sealed class SiloPinnedPlacementAttribute() : PlacementAttribute(SiloPinnedPlacement.Instance);

public sealed class SiloPinnedPlacementDirector : IPlacementDirector
{
    public Task<SiloAddress> OnAddActivation(PlacementStrategy strategy, PlacementTarget target, IPlacementContext context)
    {
        string key = target.GrainIdentity.Key.ToString()!;
        return context.GetCompatibleSilos(target).FirstOrDefault(s => s.ToParsableString() == key) is { } silo
            ? Task.FromResult(silo)
            : throw new SiloUnavailableException($"silo {key} is not in the cluster");
    }
}
