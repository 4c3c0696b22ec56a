using System.Text.Json;
using System.Text.Json.Nodes;
using Parquet;
using Parquet.Schema;

namespace TauCluster.Engine;

/// <summary>
/// Reads an arrowspace manifold directory: <c>manifold.parquet</c> (COO triplets row, col, value with
/// n_rows, n_cols, nnz, name_id on every row) and <c>manifold.json</c> (builder metadata).
/// </summary>
public static class Manifold
{
    public const string ParquetFile = "manifold.parquet";
    public const string MetadataFile = "manifold.json";
    // Indented like arrowspace's own files; relaxed escaping keeps '+' and non-ASCII names readable (a file, not HTML).
    private static readonly JsonSerializerOptions IndentedJson = new() { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <remarks>
    /// Runs the reader on the thread pool: waiting on it from a single-threaded scheduler (an Orleans grain loading a
    /// model) would otherwise deadlock, as its continuations would queue behind the wait.
    /// </remarks>
    public static Laplacian Load(string directory) => Task.Run(() => LoadAsync(directory)).GetAwaiter().GetResult();

    public static async Task<Laplacian> LoadAsync(string directory, CancellationToken cancellation = default)
    {
        if (!Directory.Exists(directory)) throw new LaplacianException($"manifold directory not found: {directory}");
        var (features, taumode) = ReadMetadata(Path.Combine(directory, MetadataFile));
        var parquetPath = Path.Combine(directory, ParquetFile);
        if (!File.Exists(parquetPath)) throw new LaplacianException($"{parquetPath} not found");

        try
        {
            await using var stream = File.OpenRead(parquetPath);
            await using var reader = await ParquetReader.CreateAsync(stream, cancellationToken: cancellation);
            var fields = reader.Schema.GetDataFields().ToDictionary(f => f.Name);
            DataField Field(string name) => fields.TryGetValue(name, out var f) ? f
                : throw new LaplacianException($"{parquetPath}: column {name} is missing");

            var rows = new List<long>(); var cols = new List<long>(); var vals = new List<double>();
            ulong nRows = 0, nCols = 0, nnz = 0;
            string name = Path.GetFileName(Path.GetFullPath(directory));
            for (int g = 0; g < reader.RowGroupCount; g++)
            {
                using var group = reader.OpenRowGroupReader(g);
                int count = checked((int)group.RowCount);
                rows.AddRange((await ReadUInt64(group, Field("row"), count, parquetPath, cancellation)).Select(v => (long)Math.Min(v, long.MaxValue)));
                cols.AddRange((await ReadUInt64(group, Field("col"), count, parquetPath, cancellation)).Select(v => (long)Math.Min(v, long.MaxValue)));
                vals.AddRange(await ReadDouble(group, Field("value"), count, parquetPath, cancellation));
                if (count == 0) continue;
                nRows = (await ReadUInt64(group, Field("n_rows"), count, parquetPath, cancellation))[0];
                nCols = (await ReadUInt64(group, Field("n_cols"), count, parquetPath, cancellation))[0];
                nnz = (await ReadUInt64(group, Field("nnz"), count, parquetPath, cancellation))[0];
                if (fields.ContainsKey("name_id"))
                {
                    var names = new string[count];
                    await group.ReadAsync(fields["name_id"], names, null, cancellation);
                    if (!string.IsNullOrEmpty(names[0])) name = names[0];
                }
            }
            if (rows.Count == 0) throw new LaplacianException($"{parquetPath}: holds no entries");
            if (nnz != (ulong)rows.Count)
                throw new LaplacianException($"{parquetPath}: nnz column says {nnz} but the file holds {rows.Count} triplets");
            if (features is { } nf && (ulong)nf != nRows)
                throw new LaplacianException($"{directory}: manifold.json nfeatures = {nf} but the matrix has {nRows} rows");
            return Laplacian.FromTriplets(name, (long)Math.Min(nRows, long.MaxValue), (long)Math.Min(nCols, long.MaxValue),
                rows.ToArray(), cols.ToArray(), vals.ToArray(), taumode);
        }
        catch (TauException) { throw; }
        catch (Exception e) when (e is IOException or InvalidDataException or InvalidOperationException or NotSupportedException or ArgumentException or OverflowException or FormatException)
        {
            throw new LaplacianException($"{parquetPath}: not a readable manifold parquet file ({e.Message})", e);
        }
    }

    private static async Task<ulong[]> ReadUInt64(ParquetRowGroupReader group, DataField field, int count, string path, CancellationToken ct)
    {
        if (field.ClrType == typeof(ulong))
        {
            if (field.IsNullable)
            {
                var nullable = new ulong?[count];
                await group.ReadAsync<ulong>(field, nullable, null, ct);
                return nullable.Select(v => v ?? throw new LaplacianException($"{path}: column {field.Name} has nulls")).ToArray();
            }
            var values = new ulong[count];
            await group.ReadAsync<ulong>(field, values, null, ct);
            return values;
        }
        if (field.ClrType == typeof(long))
        {
            var values = new long[count];
            if (field.IsNullable)
            {
                var nullable = new long?[count];
                await group.ReadAsync<long>(field, nullable, null, ct);
                values = nullable.Select(v => v ?? throw new LaplacianException($"{path}: column {field.Name} has nulls")).ToArray();
            }
            else await group.ReadAsync<long>(field, values, null, ct);
            return values.Select(v => v < 0 ? throw new LaplacianException($"{path}: column {field.Name} has a negative index {v}") : (ulong)v).ToArray();
        }
        throw new LaplacianException($"{path}: column {field.Name} is {field.ClrType.Name}, expected UInt64");
    }

    private static async Task<double[]> ReadDouble(ParquetRowGroupReader group, DataField field, int count, string path, CancellationToken ct)
    {
        if (field.ClrType == typeof(double))
        {
            if (field.IsNullable)
            {
                var nullable = new double?[count];
                await group.ReadAsync<double>(field, nullable, null, ct);
                return nullable.Select(v => v ?? double.NaN).ToArray();
            }
            var values = new double[count];
            await group.ReadAsync<double>(field, values, null, ct);
            return values;
        }
        if (field.ClrType == typeof(float))
        {
            var values = new float[count];
            await group.ReadAsync<float>(field, values, null, ct);
            return values.Select(v => (double)v).ToArray();
        }
        throw new LaplacianException($"{path}: column {field.Name} is {field.ClrType.Name}, expected Float64");
    }

    /// <summary>Returns nfeatures (if stated) and the domain's τ mode from manifold.json.</summary>
    private static (long? Features, TaumodeKind? Taumode) ReadMetadata(string path)
    {
        if (!File.Exists(path)) throw new LaplacianException($"{path} not found");
        JsonNode? root;
        try { root = JsonNode.Parse(File.ReadAllText(path)); }
        catch (JsonException e) { throw new LaplacianException($"{path}: invalid JSON ({e.Message})", e); }
        var builder = root?["builder_config"];
        long? features = null;
        if (builder?["nfeatures"]?["Usize"] is JsonValue nf)
            features = nf.TryGetValue<long>(out var f) ? f : throw new LaplacianException($"{path}: builder_config.nfeatures.Usize is not an integer");
        TaumodeKind? mode = builder?["synthesis"]?["TauMode"] switch
        {
            null => null,
            JsonValue v when v.TryGetValue<string>(out var s) => Parse(s, path),
            JsonObject o when o.Count == 1 => Parse(o.First().Key, path),   // e.g. {"Percentile": 0.9} or {"Fixed": 0.5}
            var other => throw new LaplacianException($"{path}: builder_config.synthesis.TauMode = {other.ToJsonString()} is not a τ mode"),
        };
        return (features, mode);

        static TaumodeKind Parse(string text, string path)
        {
            try { return ModelConfig.ParseTaumode(text, $"{path}: builder_config.synthesis.TauMode"); }
            catch (ModelFormatException e) { throw new LaplacianException(e.Message); }
        }
    }

    /// <summary>Writes a Laplacian as an arrowspace manifold directory (COO triplets, UInt64/Float64 columns).</summary>
    public static Task WriteAsync(string directory, Laplacian laplacian, TaumodeKind taumode, CancellationToken cancellation = default) =>
        WriteAsync(directory, laplacian, taumode, null, cancellation);

    /// <summary>
    /// Writes a Laplacian as an arrowspace manifold directory, with more metadata in manifold.json: the entries of
    /// <paramref name="extraMetadata"/>'s <c>builder_config</c> join arrowspace's builder_config (nfeatures and
    /// synthesis stay the writer's, so they always match the matrix), its other keys go at the top level.
    /// </summary>
    public static async Task WriteAsync(string directory, Laplacian laplacian, TaumodeKind taumode, JsonObject? extraMetadata, CancellationToken cancellation = default)
    {
        Directory.CreateDirectory(directory);
        var entries = laplacian.Entries().ToArray();
        await WriteTripletsAsync(Path.Combine(directory, ParquetFile), laplacian.Name, (ulong)laplacian.Dimension, (ulong)laplacian.Dimension,
            entries.Select(e => (ulong)e.Row).ToArray(), entries.Select(e => (ulong)e.Column).ToArray(), entries.Select(e => e.Value).ToArray(), cancellation);
        var builderConfig = new JsonObject
        {
            ["nfeatures"] = new JsonObject { ["Usize"] = laplacian.Dimension },
            ["synthesis"] = new JsonObject { ["TauMode"] = taumode.ToString() },
        };
        var metadata = new JsonObject { ["name_id"] = laplacian.Name, ["builder_config"] = builderConfig };
        foreach (var (key, node) in extraMetadata ?? [])
        {
            if (key == "builder_config" && node is JsonObject extraConfig)
            {
                foreach (var (setting, value) in extraConfig)
                    if (setting is not ("nfeatures" or "synthesis")) builderConfig[setting] = value?.DeepClone();
            }
            else if (key != "name_id") metadata[key] = node?.DeepClone();
        }
        await File.WriteAllTextAsync(Path.Combine(directory, MetadataFile), metadata.ToJsonString(IndentedJson), cancellation);
    }

    /// <summary>Writes raw triplets in arrowspace's column layout; tests use it to make malformed manifolds too.</summary>
    public static async Task WriteTripletsAsync(string path, string name, ulong nRows, ulong nCols, ulong[] row, ulong[] col, double[] value, CancellationToken cancellation = default)
    {
        var fields = new DataField[]
        {
            new DataField<ulong>("row"), new DataField<ulong>("col"), new DataField<double>("value"),
            new DataField<ulong>("n_rows"), new DataField<ulong>("n_cols"), new DataField<ulong>("nnz"), new DataField<string>("name_id"),
        };
        await using var stream = File.Create(path);
        await using var writer = await ParquetWriter.CreateAsync(new ParquetSchema(fields), stream, cancellationToken: cancellation);
        using var group = writer.CreateRowGroup();
        int n = row.Length;
        await group.WriteAsync<ulong>(fields[0], row, null, null, cancellation);
        await group.WriteAsync<ulong>(fields[1], col, null, null, cancellation);
        await group.WriteAsync<double>(fields[2], value, null, null, cancellation);
        await group.WriteAsync<ulong>(fields[3], Enumerable.Repeat(nRows, n).ToArray(), null, null, cancellation);
        await group.WriteAsync<ulong>(fields[4], Enumerable.Repeat(nCols, n).ToArray(), null, null, cancellation);
        await group.WriteAsync<ulong>(fields[5], Enumerable.Repeat((ulong)n, n).ToArray(), null, null, cancellation);
        await group.WriteAsync(fields[6], Enumerable.Repeat(name, n).ToArray(), null);
    }
}
