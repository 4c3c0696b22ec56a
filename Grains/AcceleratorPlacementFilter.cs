using Orleans.Placement;
using Orleans.Runtime.MembershipService.SiloMetadata;
using Orleans.Runtime.Placement;

namespace TauCluster.Grains;

/// <summary>
/// Places a grain on silos whose device is an accelerator (<c>Tau:Device</c> = cuda…, in their silo metadata) when the
/// cluster has any, and anywhere otherwise: sessions then run on GPUs where there are GPUs, and a cluster of CPU silos
/// places them as before. The grain's own placement strategy chooses among the silos that remain.
/// </summary>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = false)]
public sealed class PreferAcceleratorsAttribute() : PlacementFilterAttribute(new AcceleratorPlacementFilterStrategy());

public sealed class AcceleratorPlacementFilterStrategy() : PlacementFilterStrategy(order: 0);

internal sealed class AcceleratorPlacementFilterDirector(ISiloMetadataCache metadata) : IPlacementFilterDirector
{
    /// <summary>The silo metadata key of the silo's device (cpu, cuda:0, ilgpu-cpu), and of the accelerator's name.</summary>
    public const string DeviceKey = "tau.device";
    public const string DeviceNameKey = "tau.device.name";

    public IEnumerable<SiloAddress> Filter(PlacementFilterStrategy filterStrategy, PlacementTarget target, IEnumerable<SiloAddress> silos)
    {
        var candidates = silos as IReadOnlyCollection<SiloAddress> ?? silos.ToList();
        var accelerated = candidates.Where(HasAccelerator).ToList();
        return accelerated.Count > 0 ? accelerated : candidates;
    }

    private bool HasAccelerator(SiloAddress silo) =>
        metadata.GetSiloMetadata(silo).Metadata.TryGetValue(DeviceKey, out var device) && device != Engine.ComputeDevice.Cpu.Name;
}
