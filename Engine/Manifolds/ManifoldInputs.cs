using System.Numerics.Tensors;

namespace TauCluster.Engine;

/// <summary>Where a manifold build's items come from: a .npy matrix, a 2-D safetensors tensor, or a model directory.</summary>
public static class ManifoldInputs
{
    /// <summary>
    /// A directory is read as a model (config.json + model.safetensors); a file by its extension, .npy or .safetensors.
    /// <paramref name="tensorName"/> picks a tensor of a .safetensors file and is an error for anything else.
    /// </summary>
    public static ItemMatrix Load(string path, string? tensorName = null)
    {
        if (Directory.Exists(path))
        {
            if (tensorName is not null) throw new ManifoldBuildException($"{path} is a model directory; a tensor name applies to .safetensors files only");
            return FromModelDirectory(path);
        }
        if (!File.Exists(path)) throw new ManifoldBuildException($"input not found: {path}");
        switch (Path.GetExtension(path).ToLowerInvariant())
        {
            case ".npy":
                if (tensorName is not null) throw new ManifoldBuildException($"{path} is a .npy file; a tensor name applies to .safetensors files only");
                var (data, rows, columns) = NumPyFile.ReadFloat32Matrix(path);
                return new ItemMatrix(data, rows, columns, path);
            case ".safetensors":
                return FromSafeTensors(path, tensorName);
            default:
                throw new ManifoldBuildException($"{path}: not a .npy or .safetensors file, nor a model directory");
        }
    }

    /// <summary>The named 2-D tensor, or the file's only 2-D tensor; several and no name is an error listing them.</summary>
    public static ItemMatrix FromSafeTensors(string path, string? tensorName)
    {
        var tensors = SafeTensors.Read(path);
        static string Describe(Tensor t) => $"{t.Name} [{string.Join(", ", t.Shape)}]";
        var matrices = tensors.Values.Where(t => t.Shape.Length == 2).OrderBy(t => t.Name, StringComparer.Ordinal).ToArray();
        Tensor tensor;
        if (tensorName is not null)
        {
            if (!tensors.TryGetValue(tensorName, out var named))
                throw new ManifoldBuildException($"{path}: no tensor named {tensorName} (2-D tensors: {(matrices.Length == 0 ? "none" : string.Join(", ", matrices.Select(Describe)))})");
            tensor = named;
        }
        else
        {
            tensor = matrices switch
            {
                [var only] => only,
                [] => throw new ManifoldBuildException($"{path}: holds no 2-D tensor"),
                // Picking one silently would make the manifold depend on header order; ask instead.
                _ => throw new ManifoldBuildException($"{path}: holds {matrices.Length} 2-D tensors ({string.Join(", ", matrices.Select(Describe))}); name one (--tensor NAME)"),
            };
        }
        if (tensor.Shape.Length != 2)
            throw new ManifoldBuildException($"{path}: tensor {Describe(tensor)} is {tensor.Shape.Length}-dimensional; a 2-D [items, features] tensor is needed");
        return new ItemMatrix(tensor.Data, tensor.Shape[0], tensor.Shape[1], $"{path}:{tensor.Name}");
    }

    public static ItemMatrix FromModelDirectory(string directory)
    {
        var config = ModelConfig.Load(Path.Combine(directory, TauModel.ConfigFile));
        var weightsPath = Path.Combine(directory, TauModel.WeightsFile);
        var weights = ModelWeights.FromTensors(config, SafeTensors.Read(weightsPath), weightsPath);
        return FromModel(config, weights, directory);
    }

    /// <summary>
    /// The items a model's Laplacian will actually score: for every token t, the first layer's query and key head vectors
    /// at position 0, exactly as the forward pass makes them — h = rms(wte[t]), q = clamp(Wq h, ±5), k = clamp(Wk h, ±5),
    /// each head slice RMS-normalised (RoPE is the identity at position 0). V·(H + Hkv) items of dimension D = C / H.
    ///
    /// Why this rather than splitting wte rows into head slices: L acts on the coordinates of q and k heads, which are
    /// outputs of c_q and c_k; coordinate i of an embedding slice has no relation to feature i of a head, so its
    /// correlations would describe the wrong space. Queries and keys both, because every attention score compares the
    /// taumode λ of a query with that of a key, both taken against the same L.
    /// </summary>
    public static ItemMatrix FromModel(ModelConfig config, ModelWeights weights, string source)
    {
        if (config.TaumodeOrDefault.ProjectionDim > 0)
            throw new ManifoldBuildException($"{source}: this model takes λ of projections into {config.LambdaDim} dimensions, not of its head vectors; build its manifold from data of that dimension");
        int c = config.NEmbd, headDim = config.HeadDim, queryHeads = config.NHead, keyHeads = config.NKvHead;
        int perToken = queryHeads + keyHeads;
        long total = (long)config.VocabSize * perToken * headDim;
        if (total > Array.MaxLength) throw new ManifoldBuildException($"{source}: {config.VocabSize} tokens × {perToken} heads × {headDim} is too many values to hold");
        var data = new float[total];
        var query = weights.Layers[0].Query;
        var key = weights.Layers[0].Key;
        var embedding = weights.TokenEmbedding;
        Parallel.For(0, config.VocabSize, () => new float[c], (token, _, h) =>
        {
            Kernels.RmsNorm(embedding.AsSpan(token * c, c), h);
            var items = data.AsSpan(token * perToken * headDim, perToken * headDim);
            Project(query, queryHeads * headDim, h, items[..(queryHeads * headDim)]);
            Project(key, keyHeads * headDim, h, items[(queryHeads * headDim)..]);
            for (int head = 0; head < perToken; head++)
            {
                var slice = items.Slice(head * headDim, headDim);
                Kernels.Clamp(slice, -Kernels.QkvLimit, Kernels.QkvLimit);
                Kernels.RmsNorm(slice, slice);
            }
            return h;
        }, _ => { });
        return new ItemMatrix(data, config.VocabSize * perToken, headDim, $"{source} (layer-0 q and k heads of {config.VocabSize} tokens)");

        void Project(float[] weight, int outputs, ReadOnlySpan<float> input, Span<float> output)
        {
            for (int o = 0; o < outputs; o++) output[o] = TensorPrimitives.Dot(weight.AsSpan(o * c, c), input);
        }
    }
}
