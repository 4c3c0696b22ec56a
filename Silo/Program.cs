TauCluster.Silo.TauSilo.Build(args).Run();
