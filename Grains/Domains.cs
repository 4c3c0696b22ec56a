using System.Buffers.Binary;
using System.Collections.Concurrent;
using Microsoft.Extensions.Options;
using TauCluster.Engine;

namespace TauCluster.Grains;

/// <summary>Packs a Laplacian into <see cref="DomainTriplets"/> (int32 row, int32 col, float64 value, little-endian) and back.</summary>
public static class TripletCodec
{
    private const int EntryBytes = 16;

    public static DomainTriplets Pack(Laplacian laplacian)
    {
        var entries = laplacian.Entries().ToArray();
        var bytes = new byte[entries.Length * EntryBytes];
        for (int k = 0; k < entries.Length; k++)
        {
            var span = bytes.AsSpan(k * EntryBytes, EntryBytes);
            BinaryPrimitives.WriteInt32LittleEndian(span, entries[k].Row);
            BinaryPrimitives.WriteInt32LittleEndian(span[4..], entries[k].Column);
            BinaryPrimitives.WriteDoubleLittleEndian(span[8..], entries[k].Value);
        }
        return new DomainTriplets(laplacian.Dimension, bytes, laplacian.DefaultTaumode?.ToString().ToLowerInvariant());
    }

    /// <summary>Builds (and so validates: square, finite, symmetric) the Laplacian the triplets describe.</summary>
    public static Laplacian Unpack(string name, DomainTriplets triplets)
    {
        if (triplets.Entries.Length % EntryBytes != 0)
            throw new LaplacianException($"domain {name}: triplet buffer of {triplets.Entries.Length} bytes is not a whole number of {EntryBytes}-byte entries");
        int n = triplets.Entries.Length / EntryBytes;
        var rows = new long[n]; var cols = new long[n]; var values = new double[n];
        for (int k = 0; k < n; k++)
        {
            var span = triplets.Entries.AsSpan(k * EntryBytes, EntryBytes);
            rows[k] = BinaryPrimitives.ReadInt32LittleEndian(span);
            cols[k] = BinaryPrimitives.ReadInt32LittleEndian(span[4..]);
            values[k] = BinaryPrimitives.ReadDoubleLittleEndian(span[8..]);
        }
        TaumodeKind? mode = triplets.Taumode is { } m ? ParseMode(name, m) : null;
        return Laplacian.FromTriplets(name, triplets.Dimension, triplets.Dimension, rows, cols, values, mode);
    }

    private static TaumodeKind ParseMode(string name, string mode)
    {
        try { return ModelConfig.ParseTaumode(mode, $"domain {name}: tau mode"); }
        catch (ModelFormatException e) { throw new LaplacianException(e.Message); }
    }
}

/// <summary>Where domain names resolve to manifold directories: configured names, then the manifolds root.</summary>
public sealed class ManifoldCatalog(IOptions<TauClusterOptions> options)
{
    public string? Find(string name) =>
        options.Value.Manifolds.TryGetValue(name, out var dir) ? dir : Names.InsideRoot(options.Value.ManifoldsRoot, name);

    /// <summary>The names <see cref="Find"/> resolves: the configured ones, and each directory under the root that holds a manifold.</summary>
    public IEnumerable<string> KnownNames()
    {
        var root = options.Value.ManifoldsRoot;
        var underRoot = root is not null && Directory.Exists(root)
            ? Directory.EnumerateDirectories(root).Select(Path.GetFileName).OfType<string>()
                .Where(n => Names.IsValid(n) && File.Exists(Path.Combine(root, n, Manifold.ParquetFile)))
            : [];
        return options.Value.Manifolds.Keys.Union(underRoot, StringComparer.Ordinal);
    }
}

/// <summary>
/// The silo's local copies of domain Laplacians: one immutable copy per (domain, version), shared by every
/// session on the silo, fetched from the domain grain once.
/// </summary>
public sealed class DomainStore(IGrainFactory grains)
{
    private readonly ConcurrentDictionary<(string Name, int Version), Lazy<Task<Laplacian>>> copies = new();

    public Task<DomainInfo> Current(string name) => grains.GetGrain<IDomainGrain>(Names.Require("domain", name)).GetInfo();

    public async Task<Laplacian> Get(string name, int version)
    {
        var lazy = copies.GetOrAdd((name, version), key => new Lazy<Task<Laplacian>>(async () =>
            TripletCodec.Unpack(key.Name, await grains.GetGrain<IDomainGrain>(key.Name).GetTriplets(key.Version))));
        try
        {
            return await lazy.Value;
        }
        catch
        {
            copies.TryRemove(new KeyValuePair<(string, int), Lazy<Task<Laplacian>>>((name, version), lazy));
            throw;
        }
    }
}
